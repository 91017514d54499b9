package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// completionFlag is the hidden flag urfave/cli reads as the last argument.
const completionFlag = "--generate-bash-completion"

// interspersed moves a command's flags in front of its positional
// arguments. urfave/cli v2 stops parsing flags at the first positional
// argument, so without this `pictl node add pi3 --mac M` — the natural
// order, and the one the docs use — would ignore --mac.
func interspersed(app *cli.App, args []string) []string {
	if len(args) == 0 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	flags, cmds := app.Flags, app.Commands
	i := 0
	// Walk down the command path; flags met on the way belong to the parents.
	for i < len(rest) {
		tok := rest[i]
		if isFlag(tok) {
			out = append(out, tok)
			i++
			if needsValue(flags, tok) && i < len(rest) {
				out = append(out, rest[i])
				i++
			}
			continue
		}
		cmd := findCommand(cmds, tok)
		if cmd == nil {
			break
		}
		out = append(out, tok)
		i++
		flags, cmds = cmd.Flags, cmd.Subcommands
		if len(cmds) == 0 {
			break
		}
	}
	var positional []string
	completing := false
	for i < len(rest) {
		tok := rest[i]
		i++
		switch {
		case tok == "--":
			positional = append(positional, rest[i:]...)
			i = len(rest)
		case tok == completionFlag:
			completing = true
		case isFlag(tok):
			out = append(out, tok)
			if needsValue(flags, tok) && i < len(rest) {
				out = append(out, rest[i])
				i++
			}
		default:
			positional = append(positional, tok)
		}
	}
	if len(positional) > 0 {
		out = append(out, "--")
		out = append(out, positional...)
	}
	if completing {
		out = append(out, completionFlag)
	}
	return out
}

func isFlag(tok string) bool { return len(tok) > 1 && tok[0] == '-' && tok != "--" }

// needsValue reports whether tok names a flag that takes the next argument
// as its value (not a bool flag, no "=value" attached).
func needsValue(flags []cli.Flag, tok string) bool {
	name := strings.TrimLeft(tok, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				_, isBool := f.(*cli.BoolFlag)
				return !isBool
			}
		}
	}
	return false
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
