package tftpd

import (
	"context"
	"net"
	"net/netip"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pictl/pictl/internal/testnet"
)

// The server opens its socket inside a network namespace (Listen in
// ns.Do) and serves from an ordinary goroutine: the library's per-transfer
// sockets and MTU lookups must land in that namespace too. The client sits
// in a second namespace behind a veth (MTU 1500) and is known to Nodes only
// by its MAC, which the server learns from its neighbour table.
func TestInNetworkNamespace(t *testing.T) {
	srvNS := testnet.New(t, "tftps")
	cliNS := testnet.New(t, "tftpc")
	srvNS.Veth("tv0", "", cliNS, "tv1", "10.203.0.2/24")
	srvNS.MustIP("addr", "add", "10.203.0.1/24", "dev", "tv0")
	mac, err := net.ParseMAC(strings.TrimSpace(cliNS.MustExec("cat", "/sys/class/net/tv1/address")))
	if err != nil {
		t.Fatal(err)
	}

	dir, files := makePiImage(t, "arm_64bit=1\n")
	nodes := &fakeNodes{nodes: []Node{{Name: "nsnode", MAC: mac, Netboot: true, Image: Image{Kind: ImagePi, BootDir: dir}}}}
	rec := &fakeRecorder{}
	srv, err := New(Config{Addr: "10.203.0.1:69", MaxBlockSize: 9000}, nodes, rec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srvNS.Do(srv.Listen); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	if _, err := osexec.LookPath("curl"); err == nil {
		out := filepath.Join(t.TempDir(), "k")
		cliNS.MustExec("curl", "-sS", "--tftp-blksize", "1468", "-o", out, "tftp://10.203.0.1/kernel8.img")
		got, _ := os.ReadFile(out)
		if string(got) != string(files["kernel8.img"]) {
			t.Errorf("curl in namespace: %d bytes, want %d", len(got), len(files["kernel8.img"]))
		}
		cliNS.MustExec("curl", "-sS", "-o", out, "tftp://10.203.0.1/cmdline.txt")
		got, _ = os.ReadFile(out)
		if !strings.Contains(string(got), "nfsroot=10.203.0.1:/nodes/nsnode,vers=3,tcp,port=2049,mountport=2049,nolock") {
			t.Errorf("cmdline.txt: %q", got)
		}
	}

	// blksize: a client asking 8192 over an MTU-1500 link gets 1472 (MTU
	// minus IPv4 and UDP headers), found by the request loop looking up the
	// ingress interface inside the namespace.
	var res rawResult
	err = cliNS.Do(func() error {
		c, err := newRawClient("10.203.0.2", &net.UDPAddr{IP: net.ParseIP("10.203.0.1"), Port: 69})
		if err != nil {
			return err
		}
		defer c.Close()
		res, err = c.get("start4.elf", rawOpts{options: []string{"blksize", "8192", "tsize", "0"}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.oack["blksize"] != "1472" || string(res.data) != string(files["start4.elf"]) {
		t.Errorf("OACK %v, %d bytes", res.oack, len(res.data))
	}
	if _, unknown := rec.snapshot(); len(unknown) != 0 {
		t.Errorf("client recorded as unknown: %+v", unknown)
	}
	nodes.mu.Lock()
	defer nodes.mu.Unlock()
	var viaMAC bool
	for _, k := range nodes.calls {
		viaMAC = viaMAC || k.MAC != nil
	}
	if !viaMAC || nodes.calls[0].IP != netip.MustParseAddr("10.203.0.2") {
		t.Errorf("lookups %v: want by IP, then by the neighbour table's MAC", nodes.calls)
	}
}
