package main

import (
	"strings"
	"testing"
)

func TestParsePins(t *testing.T) {
	tests := []struct {
		in      string
		want    cpuPins
		wantErr bool
	}{
		{"", cpuPins{}, false},
		{"0:1", cpuPins{tool: "0", server: "1"}, false},
		{"0-1:2-3", cpuPins{tool: "0-1", server: "2-3"}, false},
		{"0", cpuPins{}, true},
		{":1", cpuPins{}, true},
		{"0:", cpuPins{}, true},
	}
	for _, tt := range tests {
		got, err := parsePins(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parsePins(%q) = %+v, %v; want %+v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestNetnsCmdPinned(t *testing.T) {
	tests := []struct {
		cpus string
		want string
	}{
		{"", "ip netns exec ns perfdhcp -4"},
		{"0", "taskset -c 0 ip netns exec ns perfdhcp -4"},
	}
	for _, tt := range tests {
		cmd := netnsCmd(t.Context(), tt.cpus, "ns", "perfdhcp", "-4")
		if got := strings.Join(cmd.Args, " "); got != tt.want {
			t.Errorf("netnsCmd(%q) = %q, want %q", tt.cpus, got, tt.want)
		}
	}
}

func TestKeaMultiThreading(t *testing.T) {
	tests := []struct {
		k        keaServer
		name, mt string
	}{
		{keaServer{threads: 2}, "kea-dhcp4", `{"enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64}`},
		{keaServer{threads: 2, labelled: true}, "kea 2 threads", `{"enable-multi-threading": true, "thread-pool-size": 2, "packet-queue-size": 64}`},
		{keaServer{threads: 0, labelled: true}, "kea 1 thread", `{"enable-multi-threading": false}`},
	}
	for _, tt := range tests {
		if got := tt.k.name(); got != tt.name {
			t.Errorf("name() = %q, want %q", got, tt.name)
		}
		if got := tt.k.multiThreading(); got != tt.mt {
			t.Errorf("multiThreading() = %q, want %q", got, tt.mt)
		}
	}
}
