package roles

import (
	"fmt"
	"io"
	"strings"

	"github.com/coreos/go-systemd/v22/unit"
)

// unitFile collects the options of one unit file or drop-in; the text is
// always written by go-systemd's unit.Serialize.
type unitFile struct {
	opts []*unit.UnitOption
	err  error
}

// set adds an option whose value pictl wrote or took from the role's
// unit syntax as is.
func (u *unitFile) set(section, name, value string) {
	if u.err != nil {
		return
	}
	if err := checkUnitValue(name, value); err != nil {
		u.err = err
		return
	}
	u.opts = append(u.opts, unit.NewUnitOption(section, name, value))
}

// setData adds an option whose value is data (a path, an address, a
// description): % would start a specifier, so it is escaped.
func (u *unitFile) setData(section, name, value string) {
	u.set(section, name, specifierEscape(value))
}

// checkUnitValue refuses values that would change the file's structure:
// a line break starts a new setting, a trailing backslash continues the
// line into the next setting.
func checkUnitValue(name, value string) error {
	if strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Errorf("%s= value %q has a line break", name, value)
	}
	if strings.HasSuffix(value, `\`) {
		return fmt.Errorf("%s= value %q ends in a backslash (it would continue into the next line)", name, value)
	}
	return nil
}

// specifierEscape makes s literal in a unit file.
func specifierEscape(s string) string { return strings.ReplaceAll(s, "%", "%%") }

func (u *unitFile) bytes() ([]byte, error) {
	if u.err != nil {
		return nil, u.err
	}
	return io.ReadAll(unit.Serialize(u.opts))
}

// mountUnitName is the name systemd requires for a mount unit of path.
func mountUnitName(path string) string { return unit.UnitNamePathEscape(path) + ".mount" }
