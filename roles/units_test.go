package roles

import (
	"strings"
	"testing"
)

func TestEnvValue(t *testing.T) {
	for _, tt := range []struct{ in, want, err string }{
		{"http://10.99.0.1:7071", "http://10.99.0.1:7071", ""},
		{"abc123_-+=,./:@", "abc123_-+=,./:@", ""},
		{"", "", ""},
		{`a b"c\d$e`, `"a b\"c\\d\$e"`, ""},
		{"a\nb", "", "line break"},
	} {
		got, err := envValue("X", tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("envValue(%q) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("envValue(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestUnitValues: data pictl puts into unit files has % escaped, and a
// value that would break the file's structure is refused.
func TestUnitValues(t *testing.T) {
	var u unitFile
	u.setData("Unit", "Description", "100% web")
	u.set("Service", "ExecStart", "/bin/echo %n")
	got, err := u.bytes()
	if err != nil {
		t.Fatal(err)
	}
	if want := "[Unit]\nDescription=100%% web\n\n[Service]\nExecStart=/bin/echo %n\n"; string(got) != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	for _, bad := range []string{"a\nb", "a\rb", `C:\`, "a\x00"} {
		var u unitFile
		u.set("Unit", "Description", bad)
		if _, err := u.bytes(); err == nil {
			t.Errorf("value %q accepted", bad)
		}
	}
	if got := mountUnitName("/srv/shop-data"); got != `srv-shop\x2ddata.mount` {
		t.Errorf("mount unit name %q", got)
	}
}
