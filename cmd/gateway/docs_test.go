package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

// clientsDoc is the client guide whose marked blocks TestDocsClients runs.
var clientsDoc = filepath.Join("..", "..", "docs", "clients.md")

// docsMarker marks the fenced block on the next line as one the test runs.
var docsMarker = regexp.MustCompile(`^<!-- docs-test: ([a-z0-9-]+) -->$`)

// docsBlocks returns the marked fenced blocks of the Markdown file at path,
// by marker name, each without its fences.
func docsBlocks(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		m := docsMarker.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		if _, dup := blocks[m[1]]; dup {
			t.Fatalf("%s:%d: second block marked %q", path, line, m[1])
		}
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), "```") {
			t.Fatalf("%s:%d: marker %q is not followed by a fenced block", path, line, m[1])
		}
		line++
		var b strings.Builder
		for closed := false; !closed; {
			if !sc.Scan() {
				t.Fatalf("%s: block %q is not closed", path, m[1])
			}
			line++
			if closed = sc.Text() == "```"; !closed {
				b.WriteString(sc.Text() + "\n")
			}
		}
		blocks[m[1]] = b.String()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// docsRun runs script with sh in dir, in an environment holding nothing of
// this machine's but PATH (no AWS profile, credentials or region), with
// KEY set as the doc tells the reader to, and returns its stdout. It fails
// the test, with stderr, if the script fails.
func docsRun(t *testing.T, dir, key, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), compatTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-e", "-c", script)
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"TMPDIR=" + dir,
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "no-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "no-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
		"KEY=" + key,
	}
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", err, script, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.String()
}

// TestDocsClients runs docs/clients.md's marked examples exactly as
// written against `gateway dev`, with only the placeholders the doc tells
// the reader to replace replaced (the URL, the certificate, the key), and
// checks that each gets the emulated model's answer.
func TestDocsClients(t *testing.T) {
	blocks := docsBlocks(t, clientsDoc)
	_, m := startDev(t, regexp.MustCompile(`(?s)gateway \(HTTPS\)\s+(https://\S+)\s+\(self-signed; CA bundle: ([^)\s]+)\).*`+
		`bob@acme.org\s+team=platform\s+cost-center=67890\s+(\S+).*press Ctrl-C`))
	base, cert, key := m[1], m[2], m[3]
	subst := strings.NewReplacer("https://gateway.example.com", base, "/path/to/cert.pem", cert, "<gateway key>", key)
	block := func(t *testing.T, name string) string {
		t.Helper()
		b, ok := blocks[name]
		if !ok {
			t.Fatalf("%s has no block marked <!-- docs-test: %s -->", clientsDoc, name)
		}
		return subst.Replace(b)
	}
	// converseText is the text of a Converse answer in JSON.
	converseText := func(t *testing.T, out string) string {
		t.Helper()
		var r struct {
			Output struct {
				Message struct{ Content []struct{ Text string } }
			}
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Output.Message.Content) == 0 {
			t.Fatalf("not a Converse answer (%v): %q", err, out)
		}
		return r.Output.Message.Content[0].Text
	}
	wantReply := func(t *testing.T, got string) {
		t.Helper()
		if !strings.HasPrefix(strings.TrimSpace(got), fakeaws.ReplyText) {
			t.Errorf("answer = %q, want %q…", got, fakeaws.ReplyText)
		}
	}

	tests := []struct {
		name string
		// blocks are the doc's blocks the example uses.
		blocks []string
		// run runs the example in dir and returns its output.
		run func(t *testing.T, dir string) string
		// check checks the output.
		check func(t *testing.T, out string)
	}{
		{
			name:   "curl",
			blocks: []string{"curl"},
			run:    func(t *testing.T, dir string) string { return docsRun(t, dir, key, block(t, "curl")) },
			check:  func(t *testing.T, out string) { wantReply(t, converseText(t, out)) },
		},
		{
			name:   "curl-openai",
			blocks: []string{"curl-openai"},
			run:    func(t *testing.T, dir string) string { return docsRun(t, dir, key, block(t, "curl-openai")) },
			check: func(t *testing.T, out string) {
				var r struct {
					Choices []struct{ Message struct{ Content string } }
				}
				if err := json.Unmarshal([]byte(out), &r); err != nil || len(r.Choices) == 0 {
					t.Fatalf("not a chat completion (%v): %q", err, out)
				}
				wantReply(t, r.Choices[0].Message.Content)
			},
		},
		{
			// What Claude Code's startup probe gets, as the doc says.
			name:   "curl-inference-profiles",
			blocks: []string{"curl-inference-profiles"},
			run: func(t *testing.T, dir string) string {
				return docsRun(t, dir, key, block(t, "curl-inference-profiles"))
			},
			check: func(t *testing.T, out string) {
				head, body, _ := strings.Cut(strings.ReplaceAll(out, "\r\n", "\n"), "\n\n")
				status, _, _ := strings.Cut(head, "\n")
				if f := strings.Fields(status); len(f) < 2 || f[1] != "404" {
					t.Errorf("status line = %q, want 404", status)
				}
				if !strings.Contains(strings.ToLower(head), "\nx-amzn-errortype: resourcenotfoundexception") {
					t.Errorf("headers lack x-amzn-ErrorType: ResourceNotFoundException:\n%s", head)
				}
				const msg = `{"message":"inference profiles are a Bedrock control-plane API; this gateway serves Bedrock Runtime only"}`
				if strings.TrimSpace(body) != msg {
					t.Errorf("body = %q, want %q", body, msg)
				}
			},
		},
		{
			name:   "aws-sdk-js-v3",
			blocks: []string{"js-env", "js"},
			run: func(t *testing.T, dir string) string {
				needCompat(t, "@aws-sdk/client-bedrock-runtime")
				modules, err := filepath.Abs(filepath.Join(compatDir, "node_modules"))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, "docs.mjs"), block(t, "js"))
				return docsRun(t, dir, key, block(t, "js-env")+"node docs.mjs\n")
			},
			check: wantReply,
		},
		{
			name:   "aws-sdk-go-v2",
			blocks: []string{"go-env", "go"},
			run: func(t *testing.T, dir string) string {
				// Built with this module's requirements, as a program in it
				// would be.
				writeFile(t, filepath.Join(dir, "main.go"), block(t, "go"))
				build := exec.Command("go", "build", "-o", filepath.Join(dir, "docs-go"), filepath.Join(dir, "main.go"))
				build.Dir = filepath.Join("..", "..")
				if out, err := build.CombinedOutput(); err != nil {
					t.Fatalf("go build of the doc's program: %v\n%s", err, out)
				}
				return docsRun(t, dir, key, block(t, "go-env")+"./docs-go\n")
			},
			check: wantReply,
		},
		{
			// Not installed by CI: runs where it is.
			name:   "boto3",
			blocks: []string{"boto3-env", "boto3"},
			run: func(t *testing.T, dir string) string {
				if err := exec.Command("python3", "-c", "import boto3").Run(); err != nil {
					t.Skipf("boto3 not installed: %v", err)
				}
				writeFile(t, filepath.Join(dir, "docs.py"), block(t, "boto3"))
				return docsRun(t, dir, key, block(t, "boto3-env")+"python3 docs.py\n")
			},
			check: wantReply,
		},
		{
			// Not installed by CI: runs where it is.
			name:   "aws-cli",
			blocks: []string{"aws-cli"},
			run: func(t *testing.T, dir string) string {
				if _, err := exec.LookPath("aws"); err != nil {
					t.Skip("the AWS CLI is not installed")
				}
				return docsRun(t, dir, key, block(t, "aws-cli"))
			},
			check: func(t *testing.T, out string) { wantReply(t, converseText(t, out)) },
		},
	}

	// Every marked block is run, so none goes stale unnoticed.
	var used []string
	for _, tt := range tests {
		used = append(used, tt.blocks...)
	}
	for name := range blocks {
		if !slices.Contains(used, name) {
			t.Errorf("%s marks block %q, which no case of TestDocsClients runs", clientsDoc, name)
		}
	}
	for name, b := range blocks {
		if s := subst.Replace(b); strings.Contains(s, "example.com") || strings.Contains(s, "<gateway key>") {
			t.Errorf("block %q keeps a placeholder the doc does not tell the reader to replace:\n%s", name, s)
		}
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Contains(tt.name, "curl") {
				if _, err := exec.LookPath("curl"); err != nil {
					if os.Getenv("CI") == "" {
						t.Skip("curl is not installed")
					}
					t.Fatal("curl is not installed")
				}
			}
			tt.check(t, tt.run(t, t.TempDir()))
		})
	}
}
