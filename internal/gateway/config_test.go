package gateway

import (
	"strings"
	"testing"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

const minimalConfig = `
session:
  role_arn: arn:aws:iam::123456789012:role/BedrockInvocationRole
auth:
  api_keys_file: keys.json
`

func TestParseConfigDefaultsAndEnvironment(t *testing.T) {
	cfg, err := Parse([]byte(minimalConfig), envMap(map[string]string{
		"AWS_REGION":                       "eu-west-1",
		"AWS_ENDPOINT_URL_STS":             "https://sts.example.internal",
		"AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "https://bedrock.example.internal/prefix",
	}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct{ name, got, want string }{
		{"listen", cfg.Listen, ":8080"},
		{"region", cfg.AWS.Region, "eu-west-1"},
		{"sts", cfg.AWS.STSEndpoint, "https://sts.example.internal"},
		{"bedrock", cfg.AWS.BedrockRuntimeEndpoint, "https://bedrock.example.internal/prefix"},
		{"team tag", cfg.Session.TagKeys.Team, "team"},
		{"cost-center tag", cfg.Session.TagKeys.CostCenter, "cost-center"},
		{"user tag", cfg.Session.TagKeys.User, ""},
		{"duration", cfg.Session.Duration.String(), "1h0m0s"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

func TestParseConfigPrecedence(t *testing.T) {
	// A config key beats the environment; the region picks the default
	// endpoint, including the China partition's domain.
	cfg, err := Parse([]byte(minimalConfig+"aws:\n  region: cn-north-1\n  sts_endpoint: https://sts.cn-north-1.amazonaws.com.cn\n"),
		envMap(map[string]string{"AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_STS": "https://ignored.example"}))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.AWS.Region, "cn-north-1"; got != want {
		t.Errorf("region = %q, want %q", got, want)
	}
	if got, want := cfg.AWS.STSEndpoint, "https://sts.cn-north-1.amazonaws.com.cn"; got != want {
		t.Errorf("sts endpoint = %q, want %q", got, want)
	}
	if got, want := cfg.AWS.BedrockRuntimeEndpoint, "https://bedrock-runtime.cn-north-1.amazonaws.com.cn"; got != want {
		t.Errorf("bedrock endpoint = %q, want %q", got, want)
	}
}

func TestParseConfigTagKeyOff(t *testing.T) {
	cfg, err := Parse([]byte(minimalConfig+"  \nsession_extra: 1\n"), envMap(nil))
	if err == nil {
		t.Fatalf("unknown top-level key accepted: %+v", cfg)
	}
	cfg, err = Parse([]byte(`
aws: {region: us-east-1}
session:
  role_arn: arn:aws:iam::123456789012:role/R
  tag_keys: {cost_center: ""}
auth: {api_keys_file: k.json}
`), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Session.TagKeys.CostCenter; got != "" {
		t.Errorf("cost_center tag key = %q, want off", got)
	}
	if got := cfg.Session.TagKeys.Team; got != "team" {
		t.Errorf("team tag key = %q, want default", got)
	}
}

// TestParseConfigReportsEveryProblem: one run shows the operator all that
// is wrong, each problem named by its YAML path.
func TestParseConfigReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte(`
listen: "nope"
tls: {cert_file: a.pem}
aws:
  bedrock_runtime_endpoint: http://bedrock.example.com
session:
  role_arn: arn:aws:iam::123:user/x
  duration: 2h
session_cache:
  size: -1
proxy:
  base_path: bedrock/
async:
  ownership_retention: 10m
log:
  level: loud
tracing:
  exporter: otlp-http
  sampler: sometimes
`), envMap(nil))
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"listen:", "tls:", "aws.region:", "aws.bedrock_runtime_endpoint:", "session.role_arn:", "session.duration:", "session_cache.size:", "auth.api_keys_file:", "proxy.base_path:", "async.ownership_retention:", "log.level:", "tracing.endpoint:", "tracing.sampler:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestParseConfigStrict(t *testing.T) {
	for _, tc := range []struct{ name, yaml string }{
		{"unknown key", minimalConfig + "aws: {region: us-east-1, regoin: x}\n"},
		{"two documents", minimalConfig + "aws: {region: us-east-1}\n---\nlisten: ':1'\n"},
		{"wrong type", minimalConfig + "aws: {region: us-east-1}\nproxy: {max_body_bytes: lots}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse([]byte(tc.yaml), envMap(nil)); err == nil {
				t.Errorf("parseConfig accepted %s", tc.name)
			}
		})
	}
}
