package gateway

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/limits"
)

// referenceKey is one configuration key as the code defines it.
type referenceKey struct {
	path string
	// value is Default's value for the key, formatted as the README
	// writes it; empty for a key inside a map or list, whose defaults
	// are its package's (applied per element).
	value string
	// zero reports whether Default leaves the key at its zero value.
	zero bool
	// subkeys, for a key documented as a unit (a map or list of blocks,
	// a limit), are the keys its README row must name.
	subkeys []string
}

// configKeys walks Config's yaml tags with Default's values.
func configKeys() []referenceKey {
	var keys []referenceKey
	var walk func(prefix string, v reflect.Value, inElement bool)
	walk = func(prefix string, v reflect.Value, inElement bool) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			path := prefix + name
			fv := v.Field(i)
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
				if fv.IsNil() {
					fv = reflect.Zero(ft)
				} else {
					fv = fv.Elem()
				}
			}
			k := referenceKey{path: path, zero: fv.IsZero()}
			switch {
			case ft == reflect.TypeFor[limits.LimitRule]():
				k.subkeys = yamlKeys(ft)
			case ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Duration]():
				walk(path+".", fv, inElement)
				continue
			case (ft.Kind() == reflect.Map || ft.Kind() == reflect.Slice) && ft.Elem().Kind() == reflect.Struct:
				k.path += map[bool]string{true: ".<>", false: "[]"}[ft.Kind() == reflect.Map]
				k.subkeys = yamlKeys(ft.Elem())
			case !inElement:
				k.value = formatDefault(fv)
			}
			keys = append(keys, k)
		}
	}
	d := Default()
	walk("", reflect.ValueOf(d), false)
	return keys
}

func yamlKeys(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// formatDefault writes v as the README does: durations in their shortest
// form (1h, 2m, 30s), the empty string as "".
func formatDefault(v reflect.Value) string {
	if d, ok := v.Interface().(time.Duration); ok {
		s := d.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	}
	if v.Kind() == reflect.String && v.String() == "" {
		return `""`
	}
	if v.Kind() == reflect.Slice {
		return fmt.Sprint(v.Interface())
	}
	return fmt.Sprint(v.Interface())
}

// readmeRow is one row of README.md's configuration reference.
type readmeRow struct {
	key, dflt, text string
}

var codeSpan = regexp.MustCompile("`([^`]*)`")

func readmeReference(t *testing.T) map[string]readmeRow {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Configuration reference\n")
	if !ok {
		t.Fatal("README.md has no \"## Configuration reference\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string]readmeRow{}
	placeholder := regexp.MustCompile(`<[^>]+>`)
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, " | ")
		if len(cells) < 3 || !strings.HasPrefix(line, "| `") {
			continue
		}
		m := codeSpan.FindStringSubmatch(cells[0])
		key := placeholder.ReplaceAllString(m[1], "<>")
		if _, dup := rows[key]; dup {
			t.Errorf("README documents %s twice", key)
		}
		rows[key] = readmeRow{key: key, dflt: cells[1], text: strings.Join(cells[2:], " | ")}
	}
	if len(rows) == 0 {
		t.Fatal("no rows found in README.md's configuration reference")
	}
	return rows
}

// TestReadmeConfigReference keeps README.md's configuration reference and
// the code in step: every key of Config is documented and every
// documented key exists; each default the README gives in code is
// Default's value, and a key whose default the README gives only in words
// (required, none, from the environment) has none in Default; a key
// documented as a unit names each of its subkeys.
func TestReadmeConfigReference(t *testing.T) {
	rows := readmeReference(t)
	var paths []string
	for _, k := range configKeys() {
		paths = append(paths, k.path)
		row, ok := rows[k.path]
		if !ok {
			t.Errorf("README's configuration reference lacks %s", k.path)
			continue
		}
		if k.value != "" {
			m := codeSpan.FindStringSubmatch(row.dflt)
			switch {
			case m != nil && m[1] != k.value:
				t.Errorf("README: %s defaults to `%s`; the code's default is `%s`", k.path, m[1], k.value)
			case m == nil && !k.zero:
				t.Errorf("README: %s's default %q is not in code; the code's default is `%s`", k.path, strings.TrimSpace(row.dflt), k.value)
			}
		}
		for _, sub := range k.subkeys {
			if !strings.Contains(row.text, "`"+sub+"`") {
				t.Errorf("README: %s does not name its key `%s`", k.path, sub)
			}
		}
	}
	for key := range rows {
		if !slices.Contains(paths, key) {
			t.Errorf("README documents %s, which the configuration does not have", key)
		}
	}
}
