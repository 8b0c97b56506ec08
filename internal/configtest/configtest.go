// Package configtest holds the one check every package's Config.Validate
// test makes: that the error is a flat list of one-line problems, each
// starting with its key, because the config loader prefixes each problem
// with its YAML path one by one.
package configtest

import (
	"errors"
	"strings"
	"testing"
)

// Problems checks that err is a flat join (errors.Join of single problems)
// of exactly one problem per entry of want, in order, each one line
// starting with its entry. A nil want means err must be nil.
func Problems(t testing.TB, err error, want []string) {
	t.Helper()
	var got []string
	if err != nil {
		joined, ok := err.(interface{ Unwrap() []error })
		if !ok {
			t.Fatalf("Validate() = %v, want an errors.Join", err)
		}
		for _, e := range joined.Unwrap() {
			got = append(got, e.Error())
		}
	}
	if len(got) != len(want) {
		t.Fatalf("Validate() = %q, want %d problems starting %q", got, len(want), want)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], w) || strings.Contains(got[i], "\n") {
			t.Errorf("Validate() problem %d = %q, want one line starting with %q", i, got[i], w)
		}
	}
}

// Paths returns the key path ("role_arn", "tenants.a.limits.burst") each
// problem of a joined validation error starts with, in order.
func Paths(err error) []string {
	if err == nil {
		return nil
	}
	errs := []error{err}
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		errs = j.Unwrap()
	}
	var paths []string
	for _, e := range errs {
		path, _, _ := strings.Cut(e.Error(), ":")
		paths = append(paths, path)
	}
	return paths
}
