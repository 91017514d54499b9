package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/pictl/pictl/images"
	"github.com/pictl/pictl/internal/cluster"
)

// imageRow is one row of `pictl image ls`.
type imageRow struct {
	Name    string   `json:"name" yaml:"name"`
	Arch    string   `json:"arch" yaml:"arch"`
	Default bool     `json:"default" yaml:"default"`
	Boot    string   `json:"boot" yaml:"boot"`
	Root    string   `json:"root" yaml:"root"`
	Nodes   []string `json:"nodes" yaml:"nodes"`
}

func imageCommand() *cli.Command {
	return &cli.Command{
		Name:  "image",
		Usage: "the operating system images nodes boot",
		Subcommands: []*cli.Command{
			{
				Name:      "import",
				Usage:     "import an image: a Raspberry Pi OS disk image, a directory or a tar archive",
				ArgsUsage: "NAME SOURCE",
				Description: `SOURCE is a disk image (.img, .img.xz, .img.gz, .img.zst) such as Raspberry Pi
OS, read without mounting; a directory (e.g. made by debootstrap); or a tar
archive (.tar, .tar.gz, .tar.xz) of a root filesystem. The image is prepared for
netbooting (fstab, SD-card-only services, network manager) and added to
cluster.yaml. An interrupted import leaves nothing behind.

   pictl image import rpi-os 2025-05-13-raspios-bookworm-arm64-lite.img.xz
   pictl image import bookworm /srv/debootstrap/bookworm`,
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "default", Usage: "make it the image nodes without one (and discovered machines) boot"},
					&cli.BoolFlag{Name: "no-prepare", Usage: "import as is, without netboot preparation"},
				},
				Action: imageImport,
			},
			{
				Name:         "show",
				Usage:        "show an image's metadata: OS, architecture, kernels, packages, boot files",
				ArgsUsage:    "NAME",
				Flags:        []cli.Flag{outputFlag()},
				BashComplete: completeImageNames,
				Action:       imageShow,
			},
			{
				Name:         "rm",
				Aliases:      []string{"remove"},
				Usage:        "delete an image (refused while nodes use it)",
				ArgsUsage:    "NAME",
				BashComplete: completeImageNames,
				Action:       imageRemove,
			},
			{
				Name:      "exec",
				Usage:     "run a command inside an image, e.g. to install packages every node on it gets",
				ArgsUsage: "NAME -- COMMAND [ARG...]",
				Description: `   pictl image exec rpi-os -- apt-get install -y nginx
A foreign architecture (arm64 on an x86 controller) runs through qemu-user-static.`,
				BashComplete: completeImageNames,
				Action:       imageExec,
			},
			{
				Name:    "ls",
				Aliases: []string{"list"},
				Usage:   "list images and the nodes using each",
				Flags:   []cli.Flag{outputFlag()},
				Action:  imageList,
			},
		},
	}
}

func imageList(c *cli.Context) error {
	cl, err := storeFor(c).Load()
	if err != nil {
		return fmt.Errorf("image ls: %w", err)
	}
	rows := make([]imageRow, 0, len(cl.Images))
	for _, name := range sortedKeys(cl.Images) {
		img := cl.Images[name]
		r := imageRow{Name: name, Arch: img.Arch, Default: img.Default, Boot: img.Boot, Root: img.Root, Nodes: []string{}}
		for _, n := range sortedKeys(cl.Nodes) {
			if cl.Nodes[n].Image == name {
				r.Nodes = append(r.Nodes, n)
			}
		}
		rows = append(rows, r)
	}
	return emit(c, rows, func(w io.Writer) error {
		t := newTable(w, "IMAGE", "ARCH", "DEFAULT", "NODES", "ROOT")
		for _, r := range rows {
			def := ""
			if r.Default {
				def = "yes"
			}
			t.row(r.Name, r.Arch, def, fmt.Sprint(len(r.Nodes)), r.Root)
		}
		return t.flush()
	})
}

func imageStore(c *cli.Context, cl *cluster.Cluster) *images.Store {
	return &images.Store{
		Dir: filepath.Join(cl.Controller.StateDir, "images"),
		InUse: func(image string) []string {
			var users []string
			for _, n := range cl.NodeNames() {
				if cl.Nodes[n].Image == image {
					users = append(users, n)
				}
			}
			return users
		},
	}
}

func imageImport(c *cli.Context) error {
	if c.NArg() != 2 {
		return fmt.Errorf("image import: expected NAME SOURCE, got %d arguments (see --help)", c.NArg())
	}
	name, source := c.Args().Get(0), c.Args().Get(1)
	cl, err := storeFor(c).Load()
	if err != nil {
		return fmt.Errorf("image import: %w", err)
	}
	if _, exists := cl.Images[name]; exists {
		return fmt.Errorf("image import: image %s is already in cluster.yaml: pick another name or pictl image rm %s first", name, name)
	}
	meta, err := imageStore(c, cl).Import(c.Context, name, source, images.ImportOptions{
		Progress:  images.ProgressPrinter(c.App.ErrWriter),
		NoPrepare: c.Bool("no-prepare"),
	})
	if err != nil {
		return fmt.Errorf("image import %s: %w", name, err)
	}
	entry := map[string]any{"arch": meta.Arch}
	if c.Bool("default") || len(cl.Images) == 0 {
		entry["default"] = true
	}
	if _, err := update(c, func(d *cluster.Document) error { return d.Set(entry, "images", name) }); err != nil {
		return fmt.Errorf("image import %s: imported, but cluster.yaml not updated: %w", name, err)
	}
	fmt.Fprintf(c.App.Writer, "%s: imported %s (%s, %s, %d files, %s)\n", name, source, orNone(meta.OSRelease.PrettyName), orNone(meta.Arch), meta.Files, images.HumanBytes(meta.Size))
	switch meta.Boot.NFSRoot {
	case "no":
		fmt.Fprintf(c.App.Writer, "warning: %s cannot mount an NFS root: %s\n", name, meta.Boot.NFSRootWhy)
	case "unknown":
		fmt.Fprintf(c.App.Writer, "note: %s may not mount an NFS root: %s\n", name, meta.Boot.NFSRootWhy)
	}
	return nil
}

func imageShow(c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	cl, err := storeFor(c).Load()
	if err != nil {
		return fmt.Errorf("image show: %w", err)
	}
	meta, err := imageStore(c, cl).Get(name)
	if err != nil {
		return fmt.Errorf("image show %s: %w", name, err)
	}
	return emit(c, meta, func(w io.Writer) error {
		t := newTable(w, "name:", meta.Name)
		t.row("source:", meta.Source)
		t.row("os:", meta.OSRelease.PrettyName)
		t.row("arch:", meta.Arch)
		t.row("kernels:", strings.Join(meta.Kernels, ", "))
		t.row("boot:", meta.Boot.Kind+" "+meta.Boot.Kernel+" "+meta.Boot.Initrd)
		t.row("nfs root:", meta.Boot.NFSRoot+" "+meta.Boot.NFSRootWhy)
		t.row("size:", fmt.Sprintf("%s in %d files", images.HumanBytes(meta.Size), meta.Files))
		t.row("packages:", fmt.Sprint(len(meta.Packages)))
		var steps []string
		for _, p := range meta.Prepared {
			steps = append(steps, p.Name)
		}
		t.row("prepared:", strings.Join(steps, ", "))
		t.row("root:", meta.RootDir)
		t.row("boot dir:", meta.BootDir)
		return t.flush()
	})
}

func imageRemove(c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	cl, err := storeFor(c).Load()
	if err != nil {
		return fmt.Errorf("image rm: %w", err)
	}
	st := imageStore(c, cl)
	if users := st.InUse(name); len(users) > 0 {
		return fmt.Errorf("image rm %s: used by %s: move them to another image first (pictl node set NODE --image OTHER)", name, strings.Join(users, ", "))
	}
	if err := st.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("image rm %s: %w", name, err)
	}
	if _, err := update(c, func(d *cluster.Document) error {
		if err := d.Delete("images", name); err != nil && !isNotFound(err) {
			return err
		}
		return nil
	}); err != nil {
		return fmt.Errorf("image rm %s: %w", name, err)
	}
	fmt.Fprintf(c.App.Writer, "%s: removed\n", name)
	return nil
}

func imageExec(c *cli.Context) error {
	if c.NArg() < 2 {
		return fmt.Errorf("image exec: expected NAME -- COMMAND [ARG...] (see --help)")
	}
	name, argv := c.Args().First(), c.Args().Slice()[1:]
	cl, err := storeFor(c).Load()
	if err != nil {
		return fmt.Errorf("image exec: %w", err)
	}
	err = imageStore(c, cl).Exec(c.Context, name, argv, images.ExecOptions{
		Stdin: os.Stdin, Stdout: c.App.Writer, Stderr: c.App.ErrWriter,
	})
	if err != nil {
		return fmt.Errorf("image exec %s: %w", name, err)
	}
	return nil
}

func completeImageNames(c *cli.Context) {
	if c.NArg() > 0 {
		return
	}
	if cl, err := storeFor(c).Load(); err == nil {
		for _, n := range sortedKeys(cl.Images) {
			fmt.Fprintln(c.App.Writer, n)
		}
	}
}
