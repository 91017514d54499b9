package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/pictl/pictl/test/vm"
)

// AddNetfilterModules copies the harness kernel's netfilter modules (and
// what they need) from its .deb into root's /usr/lib/modules and indexes
// them with depmod: the Debian image has no kernel package, and the
// router role's nftables ruleset loads nf_tables, nft_chain_nat, nft_masq
// and conntrack on demand (conntrack needs libcrc32c, which needs the
// crc32c crypto module).
func AddNetfilterModules(ctx context.Context, root string, a *vm.Artifacts) error {
	tmp, err := os.MkdirTemp("", "pictl-modules-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rel := a.KernelRelease
	mods := "./lib/modules/" + rel
	script := fmt.Sprintf(`dpkg-deb --fsys-tarfile %q | tar -C %q -x --wildcards '%s/kernel/net/netfilter/*' '%s/kernel/net/ipv4/netfilter/*' '%s/kernel/net/ipv6/netfilter/*' '%s/kernel/lib/libcrc32c.ko' '%s/kernel/crypto/crc32c_generic.ko' '%s/modules.builtin*' '%s/modules.order'`,
		a.KernelDeb, tmp, mods, mods, mods, mods, mods, mods, mods)
	if b, err := exec.CommandContext(ctx, "sh", "-c", script).CombinedOutput(); err != nil {
		return fmt.Errorf("extract netfilter modules from %s: %w\n%s", a.KernelDeb, err, b)
	}
	dst := filepath.Join(root, "usr/lib/modules")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if b, err := exec.CommandContext(ctx, "cp", "-a", filepath.Join(tmp, "lib/modules", rel), dst).CombinedOutput(); err != nil {
		return fmt.Errorf("copy modules: %w\n%s", err, b)
	}
	if b, err := exec.CommandContext(ctx, "depmod", "-b", filepath.Join(root, "usr"), rel).CombinedOutput(); err != nil {
		return fmt.Errorf("depmod: %w\n%s", err, b)
	}
	return nil
}

// LabPackages are what the lb, router, web and db roles need in a Debian
// image (kmod: the kernel loads netfilter modules through modprobe).
var LabPackages = []string{"nginx-light", "haproxy", "keepalived", "nftables", "frr", "iproute2", "kmod", "curl"}
