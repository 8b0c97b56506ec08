package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// execMainEnv, when set to 1, makes the test binary run the gateway's
// main instead of the tests: TestSIGTERM starts the real program this way
// and sends it real signals.
const execMainEnv = "GATEWAY_TEST_EXEC_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(execMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestPricesCommand: `gateway prices` lists the catalogue, with a config's
// overrides when given one.
func TestPricesCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"prices", "--model", "amazon.nova-lite*", "--region", "us-east-1"},
		testProcess(&out, &errb)); err != nil || !strings.Contains(out.String(), "NovaLite") {
		t.Fatalf("gateway prices = %v, stdout %q, stderr %q", err, out.String(), errb.String())
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keys.json"), "[]")
	writeFile(t, filepath.Join(dir, "gw.yaml"), `aws: {region: us-east-1}
session: {role_arn: "arn:aws:iam::123456789012:role/R"}
auth: {api_keys_file: keys.json}
pricing:
  prices:
    - {model: amazon.nova-lite-v1:0, region: us-east-1, input: "0.05", output: "0.2"}
`)
	out.Reset()
	if err := run(context.Background(), []string{"prices", "--config", filepath.Join(dir, "gw.yaml"), "--model", "amazon.nova-lite*",
		"--region", "us-east-1", "--format", "json"}, testProcess(&out, &errb)); err != nil ||
		!strings.Contains(out.String(), `"input_per_mtok": "0.05"`) || !strings.Contains(out.String(), `"source": "config"`) {
		t.Errorf("gateway prices --config = %v, stdout %s, stderr %s", err, out.String(), errb.String())
	}
}
