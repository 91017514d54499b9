package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"
)

// outputFlag is the -o flag of every command that prints data.
func outputFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "output",
		Aliases: []string{"o"},
		Usage:   "output format: table, json or yaml (json and yaml are stable, for scripts)",
		Value:   "table",
		Action: func(_ *cli.Context, v string) error {
			switch v {
			case "table", "json", "yaml":
				return nil
			}
			return fmt.Errorf("unknown output format %q: use table, json or yaml", v)
		},
	}
}

// emit prints v as JSON or YAML when asked, else calls table.
func emit(c *cli.Context, v any, table func(w io.Writer) error) error {
	w := c.App.Writer
	switch c.String("output") {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(v); err != nil {
			return err
		}
		return enc.Close()
	}
	return table(w)
}

// table writes aligned columns; empty cells show as "-".
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }
