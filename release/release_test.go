// Package release checks the release pipeline statically, for what
// `goreleaser check` and actionlint do not see: the Dockerfiles pull only
// fully qualified base images pinned by digest, and the two agree on the
// runtime stage; the build context leaves compat/node_modules out;
// GoReleaser builds ./cmd/gateway statically for exactly linux and darwin
// on amd64 and arm64, stamps a version variable that exists, copies the
// binary it builds into the image, and pushes, under the name the deploy
// kit pulls, an image it signs; and the workflows pin every action by
// commit and ask for no more permissions than they need.
//
// The tests read files only; they need no Docker engine, registry or
// network.
package release

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"go.yaml.in/yaml/v3"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// image is the repository GoReleaser pushes to and the deploy kit pulls.
const image = "ghcr.io/bedrock-gateway/gateway"

// root is the repository root, seen from this package's directory (where
// go test runs it).
const root = ".."

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func readYAML(t *testing.T, name string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, name), v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// --- Dockerfiles ----------------------------------------------------------

var dockerfiles = []string{"Dockerfile", "Dockerfile.release"}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int    // 1-based line where it starts
	cmd  string // upper case: FROM, COPY, ...
	args string
}

// parseDockerfile returns the instructions of a Dockerfile and the value of
// its "# syntax=" parser directive, if any.
func parseDockerfile(t *testing.T, name string) (syntax string, ins []instruction) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, name)))
	var (
		cur        strings.Builder
		start, n   int
		directives = true // parser directives come before anything else
	)
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 {
			if line == "" || strings.HasPrefix(line, "#") {
				if directives {
					if k, v, ok := strings.Cut(strings.TrimSpace(strings.TrimPrefix(line, "#")), "="); ok && strings.EqualFold(strings.TrimSpace(k), "syntax") {
						syntax = strings.TrimSpace(v)
						continue
					}
				}
				directives = false
				continue
			}
			directives = false
			start = n
		} else if strings.HasPrefix(line, "#") {
			continue // comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		ins = append(ins, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return syntax, ins
}

// pinnedRef is a fully qualified image reference pinned by digest:
// registry host (with a dot), repository path, tag (kept for readability
// and for digest-updating bots) and sha256 digest.
var pinnedRef = regexp.MustCompile(`^[a-z0-9-]+(\.[a-z0-9-]+)+(:[0-9]+)?/[a-z0-9._-]+(/[a-z0-9._-]+)*:[A-Za-z0-9._-]+@sha256:([0-9a-f]{64})$`)

func checkPinned(ref string) error {
	m := pinnedRef.FindStringSubmatch(ref)
	if m == nil {
		return fmt.Errorf("%q is not a fully qualified image pinned by digest (registry/repository:tag@sha256:<64 hex>)", ref)
	}
	if d := m[len(m)-1]; strings.Count(d, d[:1]) == len(d) {
		return fmt.Errorf("%q has a placeholder digest", ref)
	}
	return nil
}

// fromImage returns the image (or earlier stage) a FROM instruction names
// and the stage name it declares.
func fromImage(args string) (ref, stage string) {
	var fields []string
	for f := range strings.FieldsSeq(args) {
		if !strings.HasPrefix(f, "--") {
			fields = append(fields, f)
		}
	}
	if len(fields) == 0 {
		return "", ""
	}
	if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
		stage = fields[2]
	}
	return fields[0], stage
}

func TestDockerfileImagesArePinned(t *testing.T) {
	for _, name := range dockerfiles {
		t.Run(name, func(t *testing.T) {
			syntax, ins := parseDockerfile(t, name)
			if syntax != "" {
				if err := checkPinned(syntax); err != nil {
					t.Errorf("%s: syntax directive: %v", name, err)
				}
			}
			stages := map[string]bool{}
			var froms int
			for _, in := range ins {
				if in.cmd != "FROM" {
					continue
				}
				froms++
				ref, stage := fromImage(in.args)
				if !stages[strings.ToLower(ref)] {
					if err := checkPinned(ref); err != nil {
						t.Errorf("%s:%d: FROM %v", name, in.line, err)
					}
				}
				if stage != "" {
					stages[strings.ToLower(stage)] = true
				}
			}
			if froms == 0 {
				t.Errorf("%s has no FROM instruction", name)
			}
		})
	}
}

// finalStage returns the FROM image of the last stage and its instructions
// that shape the running container.
func finalStage(t *testing.T, name string) (from string, runtime []string) {
	t.Helper()
	_, ins := parseDockerfile(t, name)
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			from, _ = fromImage(in.args)
			runtime = nil
		case "USER", "EXPOSE", "STOPSIGNAL", "ENTRYPOINT", "CMD", "ENV", "WORKDIR", "HEALTHCHECK":
			runtime = append(runtime, in.cmd+" "+in.args)
		}
	}
	return from, runtime
}

// The release image is the local image with a prebuilt binary: same base,
// user, ports, signal and command.
func TestDockerfilesShareRuntimeStage(t *testing.T) {
	localFrom, local := finalStage(t, "Dockerfile")
	releaseFrom, release := finalStage(t, "Dockerfile.release")
	if releaseFrom != localFrom {
		t.Errorf("Dockerfile.release runtime base = %q, want %q (as in Dockerfile)", releaseFrom, localFrom)
	}
	if diff := cmp.Diff(local, release); diff != "" {
		t.Errorf("runtime instructions differ (-Dockerfile +Dockerfile.release):\n%s", diff)
	}
}

func TestDockerignore(t *testing.T) {
	lines := map[string]bool{}
	for line := range strings.Lines(string(readFile(t, ".dockerignore"))) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Errorf(".dockerignore re-includes %q; nothing it leaves out may come back", line)
		}
		lines[strings.Trim(line, "/")] = true
	}
	for _, want := range []string{
		"compat/node_modules", // hundreds of MB of npm packages
		".git", ".ci", "deploy", "**/*_test.go", "**/testdata", "*.md", "Dockerfile", ".dockerignore",
		"gateway", "*.pem", "*.key", "*.crt", "keys.json", "*.jsonl", ".env",
	} {
		if !lines[want] {
			t.Errorf(".dockerignore does not exclude %q", want)
		}
	}
}

// --- GoReleaser -------------------------------------------------------------

// platform is a GOOS and GOARCH pair, as in a build's ignore list.
type platform struct {
	Goos   string `yaml:"goos"`
	Goarch string `yaml:"goarch"`
}

type sbom struct {
	Artifacts string `yaml:"artifacts"`
}

// goreleaserConfig is the part of .goreleaser.yaml these tests read.
type goreleaserConfig struct {
	Version int `yaml:"version"`
	Builds  []struct {
		ID      string     `yaml:"id"`
		Main    string     `yaml:"main"`
		Binary  string     `yaml:"binary"`
		Env     []string   `yaml:"env"`
		Goos    []string   `yaml:"goos"`
		Goarch  []string   `yaml:"goarch"`
		Targets []string   `yaml:"targets"`
		Ignore  []platform `yaml:"ignore"`
		Flags   []string   `yaml:"flags"`
		Ldflags []string   `yaml:"ldflags"`
	} `yaml:"builds"`
	SBOMs []sbom `yaml:"sboms"`
	Signs []struct {
		Cmd       string   `yaml:"cmd"`
		Artifacts string   `yaml:"artifacts"`
		Args      []string `yaml:"args"`
	} `yaml:"signs"`
	DockersV2 []struct {
		IDs        []string `yaml:"ids"`
		Dockerfile string   `yaml:"dockerfile"`
		Images     []string `yaml:"images"`
		Platforms  []string `yaml:"platforms"`
	} `yaml:"dockers_v2"`
	Dockers     []any `yaml:"dockers"`
	DockerSigns []struct {
		Cmd  string   `yaml:"cmd"`
		Args []string `yaml:"args"`
	} `yaml:"docker_signs"`
}

func loadGoreleaser(t *testing.T) goreleaserConfig {
	t.Helper()
	var c goreleaserConfig
	readYAML(t, ".goreleaser.yaml", &c)
	if c.Version != 2 {
		t.Fatalf(".goreleaser.yaml version = %d, want 2", c.Version)
	}
	return c
}

func TestGoreleaserBuilds(t *testing.T) {
	c := loadGoreleaser(t)
	var targets []string
	for _, b := range c.Builds {
		if b.Main != "./cmd/gateway" {
			continue
		}
		if !slices.Contains(b.Env, "CGO_ENABLED=0") {
			t.Errorf("build %q env = %q, want CGO_ENABLED=0 (a static binary for distroless)", b.ID, b.Env)
		}
		if !slices.Contains(b.Flags, "-trimpath") {
			t.Errorf("build %q flags = %q, want -trimpath", b.ID, b.Flags)
		}
		if ld := strings.Join(b.Ldflags, " "); !strings.Contains(ld, "-X main.version=") {
			t.Errorf("build %q ldflags = %q, want -X main.version=...", b.ID, ld)
		}
		if len(b.Targets) > 0 { // goos_goarch[_variant]; replaces goos × goarch
			for _, tg := range b.Targets {
				goos, rest, _ := strings.Cut(tg, "_")
				goarch, _, _ := strings.Cut(rest, "_")
				targets = append(targets, goos+"/"+goarch)
			}
			continue
		}
		for _, goos := range b.Goos {
			for _, goarch := range b.Goarch {
				ignored := slices.ContainsFunc(b.Ignore, func(p platform) bool {
					return (p.Goos == "" || p.Goos == goos) && (p.Goarch == "" || p.Goarch == goarch)
				})
				if !ignored {
					targets = append(targets, goos+"/"+goarch)
				}
			}
		}
	}
	slices.Sort(targets)
	want := []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64"}
	if diff := cmp.Diff(want, targets); diff != "" {
		t.Errorf("GoReleaser targets of ./cmd/gateway (-want +got):\n%s", diff)
	}
}

// -X of a variable that does not exist is silently ignored by the linker.
func TestVersionVariableExists(t *testing.T) {
	src := readFile(t, "cmd/gateway/main.go")
	if !regexp.MustCompile(`(?m)^var version(\s+string)?\s*=`).Match(src) {
		t.Error(`cmd/gateway/main.go declares no package-level "var version", which the release ldflags set with -X main.version=`)
	}
}

func TestGoreleaserImage(t *testing.T) {
	c := loadGoreleaser(t)
	if len(c.Dockers) > 0 {
		t.Error(".goreleaser.yaml uses dockers; use dockers_v2 (dockers and docker_manifests are being phased out)")
	}
	if len(c.DockersV2) != 1 {
		t.Fatalf(".goreleaser.yaml has %d dockers_v2 entries, want 1", len(c.DockersV2))
	}
	d := c.DockersV2[0]
	if !slices.Equal(d.Images, []string{image}) {
		t.Errorf("dockers_v2 images = %q, want [%q]", d.Images, image)
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, d.Platforms); diff != "" {
		t.Errorf("dockers_v2 platforms (-want +got):\n%s", diff)
	}
	if d.Dockerfile != "Dockerfile.release" {
		t.Errorf("dockers_v2 dockerfile = %q, want Dockerfile.release", d.Dockerfile)
	}
	// GoReleaser lays each platform's binaries out as <os>/<arch>/<binary>
	// in the build context; the Dockerfile must copy that path.
	var binary string
	for _, b := range c.Builds {
		if slices.Contains(d.IDs, b.ID) {
			binary = b.Binary
		}
	}
	if binary == "" {
		t.Fatalf("dockers_v2 ids %q name no build with a binary", d.IDs)
	}
	_, ins := parseDockerfile(t, d.Dockerfile)
	wantCopy := "${TARGETPLATFORM}/" + binary + " "
	if !slices.ContainsFunc(ins, func(in instruction) bool {
		return in.cmd == "COPY" && strings.HasPrefix(in.args, wantCopy)
	}) {
		t.Errorf("%s does not COPY %q, where GoReleaser puts the binary", d.Dockerfile, strings.TrimSpace(wantCopy))
	}
}

func TestGoreleaserSupplyChain(t *testing.T) {
	c := loadGoreleaser(t)
	if !slices.ContainsFunc(c.SBOMs, func(s sbom) bool {
		return s.Artifacts == "" || s.Artifacts == "archive" // GoReleaser's default is archive
	}) {
		t.Error(".goreleaser.yaml makes no SBOM of the archives")
	}
	var signed bool
	for _, s := range c.Signs {
		if s.Cmd == "cosign" && s.Artifacts == "checksum" {
			signed = true
			if !slices.Contains(s.Args, "--yes") {
				t.Errorf("signs: cosign args = %q, want --yes (no prompt in CI)", s.Args)
			}
		}
	}
	if !signed {
		t.Error(".goreleaser.yaml does not sign the checksums with cosign")
	}
	if len(c.DockerSigns) == 0 {
		t.Error(".goreleaser.yaml does not sign the image")
	}
	for _, s := range c.DockerSigns {
		if s.Cmd != "cosign" || !slices.Contains(s.Args, "--yes") || slices.ContainsFunc(s.Args, func(a string) bool { return strings.HasPrefix(a, "--key") }) {
			t.Errorf("docker_signs: %s %q, want keyless cosign with --yes", s.Cmd, s.Args)
		}
	}
}

// --- the deploy kit pulls what GoReleaser pushes --------------------------

var ghcrRef = regexp.MustCompile(`ghcr\.io/[A-Za-z0-9._/-]+`)

func TestDeployPullsReleasedImage(t *testing.T) {
	var found int
	err := filepath.WalkDir(filepath.Join(root, "deploy"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, "_test.go") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, ref := range ghcrRef.FindAllString(string(data), -1) {
			found++
			if ref = strings.TrimRight(ref, "."); ref != image {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s names image %q, want %q (what .goreleaser.yaml pushes)", rel, ref, image)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Errorf("deploy/ names no ghcr.io image; the kustomize base (or chart) should pull %q", image)
	}
}

// The image tags GoReleaser pushes are the git tags ("{{ .Tag }}", v1.2.3),
// so a chart whose appVersion is its default image tag must use that form.
func TestChartAppVersionIsAReleaseTag(t *testing.T) {
	charts, err := filepath.Glob(filepath.Join(root, "deploy", "*", "*", "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(charts) == 0 {
		t.Skip("deploy/ has no Helm chart")
	}
	tag := regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	for _, path := range charts {
		rel, _ := filepath.Rel(root, path)
		var chart struct {
			AppVersion string `yaml:"appVersion"`
		}
		readYAML(t, rel, &chart)
		if !tag.MatchString(chart.AppVersion) {
			t.Errorf("%s appVersion = %q, want a release tag such as v1.2.3 (the image tag GoReleaser pushes)", rel, chart.AppVersion)
		}
	}
}

// --- workflows ----------------------------------------------------------------

type workflow struct {
	On          map[string]any `yaml:"on"`
	Permissions any            `yaml:"permissions"`
	Jobs        map[string]struct {
		Permissions any `yaml:"permissions"`
		Steps       []struct {
			Uses string            `yaml:"uses"`
			Run  string            `yaml:"run"`
			With map[string]string `yaml:"with"`
		} `yaml:"steps"`
	} `yaml:"jobs"`
}

func loadWorkflow(t *testing.T, name string) workflow {
	t.Helper()
	var w workflow
	readYAML(t, filepath.Join(".github", "workflows", name), &w)
	return w
}

// usesLine is a step's "uses:" with its trailing comment.
var usesLine = regexp.MustCompile(`^\s*(?:-\s+)?uses:\s*["']?([^\s"'#]+)["']?\s*(?:#\s*(.*))?$`)

var pinnedAction = regexp.MustCompile(`^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$`)

func TestActionsArePinned(t *testing.T) {
	for _, name := range []string{"ci.yml", "release.yml"} {
		t.Run(name, func(t *testing.T) {
			var n int
			for i, line := range strings.Split(string(readFile(t, filepath.Join(".github", "workflows", name))), "\n") {
				m := usesLine.FindStringSubmatch(line)
				if m == nil {
					continue
				}
				n++
				ref, comment := m[1], strings.TrimSpace(m[2])
				if strings.HasPrefix(ref, "./") {
					continue
				}
				if !pinnedAction.MatchString(ref) {
					t.Errorf("%s:%d: uses %q, want owner/repo@<40-hex commit>", name, i+1, ref)
				}
				if !strings.HasPrefix(comment, "v") {
					t.Errorf("%s:%d: uses %q without a version comment (# vX.Y.Z)", name, i+1, ref)
				}
			}
			if n == 0 {
				t.Errorf("%s uses no action", name)
			}
		})
	}
}

// permissions returns the token permissions a job gets: its own block if it
// has one (GitHub does not merge it with the workflow's), else the
// workflow's.
func permissions(wf, job any) map[string]string {
	block := wf
	if job != nil {
		block = job
	}
	p := map[string]string{}
	m, _ := block.(map[string]any)
	for k, v := range m {
		p[k] = fmt.Sprint(v)
	}
	return p
}

func TestCIWorkflow(t *testing.T) {
	w := loadWorkflow(t, "ci.yml")
	for _, ev := range []string{"push", "pull_request"} {
		if _, ok := w.On[ev]; !ok {
			t.Errorf("ci.yml does not run on %s", ev)
		}
	}
	if diff := cmp.Diff(map[string]any{"contents": "read"}, w.Permissions); diff != "" {
		t.Errorf("ci.yml permissions (-want +got):\n%s", diff)
	}
	var runs bool
	for job, j := range w.Jobs {
		if j.Permissions != nil {
			t.Errorf("ci.yml job %s sets its own permissions; CI needs only contents: read", job)
		}
		for _, s := range j.Steps {
			runs = runs || strings.Contains(s.Run, "bash .ci/run")
		}
	}
	if !runs {
		t.Error("ci.yml does not run bash .ci/run")
	}
}

func TestReleaseWorkflow(t *testing.T) {
	w := loadWorkflow(t, "release.yml")
	push, _ := w.On["push"].(map[string]any)
	if diff := cmp.Diff(map[string]any{"tags": []any{"v*"}}, push); diff != "" {
		t.Errorf("release.yml on.push (-want +got):\n%s", diff)
	}
	if len(w.On) != 1 {
		t.Errorf("release.yml runs on %d events, want only push of v* tags", len(w.On))
	}
	var grVersion string
	for job, j := range w.Jobs {
		var releases bool
		for _, s := range j.Steps {
			if strings.HasPrefix(s.Uses, "goreleaser/goreleaser-action@") {
				releases = true
				grVersion = s.With["version"]
				if !strings.HasPrefix(s.With["args"], "release") {
					t.Errorf("release.yml: goreleaser args = %q, want release ...", s.With["args"])
				}
			}
		}
		got := permissions(w.Permissions, j.Permissions)
		if releases {
			want := map[string]string{"contents": "write", "packages": "write", "id-token": "write"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("release.yml job %s permissions (-want +got):\n%s", job, diff)
			}
		} else if len(got) > 0 {
			t.Errorf("release.yml job %s has permissions %v; only the GoReleaser job needs any", job, got)
		}
	}
	if !regexp.MustCompile(`^v2\.\d+\.\d+$`).MatchString(grVersion) {
		t.Errorf("release.yml: goreleaser version = %q, want an exact v2.x.y, the one .goreleaser.yaml is checked with", grVersion)
	}
	// .ci/run checks the config with a GoReleaser it installs; release with
	// the same one.
	if m := regexp.MustCompile(`goreleaser/v2@(v[0-9.]+)`).FindSubmatch(readFile(t, ".ci/run")); m != nil && string(m[1]) != grVersion {
		t.Errorf("release.yml releases with GoReleaser %s, .ci/run checks with %s", grVersion, m[1])
	}
}
