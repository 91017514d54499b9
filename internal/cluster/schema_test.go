package cluster

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// TestSchemaMatchesStructTags keeps the decoder's key lists and the
// struct tags (documentation, and what other encoders see) in step.
func TestSchemaMatchesStructTags(t *testing.T) {
	for _, tc := range []struct {
		sec   section
		typ   any
		extra []string // keys the YAML has beyond the tags
	}{
		{secTop, Cluster{}, nil},
		{secController, Controller{}, []string{"interface"}},
		{secPorts, Ports{}, nil},
		{secDHCP, DHCP{}, nil},
		{secTFTP, TFTP{}, nil},
		{secImage, Image{}, nil},
		{secNode, Node{}, []string{"mac", "macs"}},
		{secVolume, Volume{}, nil},
		{secRole, RoleRef{}, nil},
		{secBalancer, Balancer{}, nil},
		{secBalancerCheck, BalancerCheck{}, nil},
		{secBalancerTLS, BalancerTLS{}, nil},
	} {
		var tags []string
		rt := reflect.TypeOf(tc.typ)
		for i := range rt.NumField() {
			tag, _, _ := strings.Cut(rt.Field(i).Tag.Get("yaml"), ",")
			if tag != "-" && tag != "" {
				tags = append(tags, tag)
			}
		}
		tags = append(tags, tc.extra...)
		keys := slices.Clone(tc.sec.keys())
		slices.Sort(tags)
		slices.Sort(keys)
		if !slices.Equal(tags, keys) {
			t.Errorf("%s: struct tags %v, schema keys %v", rt.Name(), tags, keys)
		}
	}
}
