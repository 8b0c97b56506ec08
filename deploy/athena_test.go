package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// --- Athena (CUR 2.0) -----------------------------------------------------

const athenaDir = "athena"

// athenaQueries are the query files checked against cur2_table.sql.
var athenaQueries = []string{"bedrock_spend_by_principal.sql", "bedrock_bypass.sql"}

// sqlStrip removes -- comments from sql and, with blankStrings, the content
// of quoted string literals (the quotes stay), so that words in comments
// and strings are not taken for column names. A doubled quote inside a
// literal is an escaped quote, as in SQL.
func sqlStrip(sql string, blankStrings bool) string {
	var b strings.Builder
	inString := false
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch {
		case inString && c == '\'' && i+1 < len(sql) && sql[i+1] == '\'':
			if !blankStrings {
				b.WriteString("''")
			}
			i++
		case c == '\'':
			inString = !inString
			b.WriteByte(c)
		case inString:
			if !blankStrings {
				b.WriteByte(c)
			}
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
			b.WriteByte('\n')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// ddlColumns returns the columns and partition columns a CREATE EXTERNAL
// TABLE statement declares: the first word of each top-level,
// comma-separated item of its column list and of PARTITIONED BY.
func ddlColumns(t *testing.T, ddl string) (cols, parts []string) {
	t.Helper()
	ddl = sqlStrip(ddl, true)
	list := func(after string) []string {
		i := strings.Index(strings.ToUpper(ddl), after)
		if i < 0 {
			t.Fatalf("cur2_table.sql: no %q", after)
		}
		rest := ddl[i+len(after):]
		open := strings.IndexByte(rest, '(')
		if open < 0 {
			t.Fatalf("cur2_table.sql: no column list after %q", after)
		}
		var names []string
		depth, start := 0, open+1
		for j := open; j < len(rest); j++ {
			switch rest[j] {
			case '(', '<':
				depth++
			case ')', '>':
				depth--
			}
			if (rest[j] == ',' && depth == 1) || depth == 0 {
				if f := strings.Fields(rest[start:j]); len(f) >= 2 {
					names = append(names, strings.ToLower(f[0]))
				} else if len(f) > 0 {
					t.Errorf("cur2_table.sql: column %q has no type", strings.Join(f, " "))
				}
				start = j + 1
			}
			if depth == 0 {
				return names
			}
		}
		t.Fatalf("cur2_table.sql: unbalanced column list after %q", after)
		return nil
	}
	return list("CREATE EXTERNAL TABLE"), list("PARTITIONED BY")
}

// curColumnRef matches the CUR 2.0 column names a query can use: the
// prefixed static columns and the map columns.
var curColumnRef = regexp.MustCompile(`\b(?:(?:bill|line_item|identity|pricing|product|reservation|savings_plan|discount|split_line_item)_[a-z0-9_]+|product|tags|resource_tags|cost_category|discount|billing_period)\b`)

// aliasDef matches "AS name", a name the query defines rather than reads.
var aliasDef = regexp.MustCompile(`(?i)\bAS\s+([a-z_][a-z0-9_]*)\b`)

// columnsUsed returns the CUR columns sql reads: identifiers that look
// like CUR columns, less the names it defines itself with AS and less
// qualified names (alias.column), which refer to a CTE's output.
func columnsUsed(sql string) []string {
	code := strings.ToLower(sqlStrip(sql, true))
	aliases := map[string]bool{}
	for _, m := range aliasDef.FindAllStringSubmatch(code, -1) {
		aliases[m[1]] = true
	}
	var used []string
	for _, m := range curColumnRef.FindAllStringIndex(code, -1) {
		name := code[m[0]:m[1]]
		if aliases[name] || (m[0] > 0 && code[m[0]-1] == '.') {
			// A name the query defines, or a qualified column (b.team):
			// the CTE it comes from reads, and is checked for, the
			// table's columns.
			continue
		}
		if !slices.Contains(used, name) {
			used = append(used, name)
		}
	}
	return used
}

// mapLookup matches the subscript operator on a map column, which fails
// the query on a missing key in Athena (Trino).
var mapLookup = regexp.MustCompile(`(?i)\b(?:tags|resource_tags|product|cost_category|discount)\s*\[`)

// tagKeyUse matches an iamPrincipal/ tag key in a string literal, with what
// precedes it on its line.
var tagKeyUse = regexp.MustCompile(`([^\n]*)'iamPrincipal/[^']*'`)

// billingPeriodFilter matches a filter of one month's partition.
var billingPeriodFilter = regexp.MustCompile(`(?i)\bWHERE\b[\s\S]*\bbilling_period\s*(?:=\s*'\d{4}-\d{2}'|IN\s*\(\s*'\d{4}-\d{2}')`)

// checkAthenaQuery returns what is wrong with a query over the cur2 table:
// a map read by subscript, an iamPrincipal/ key read other than through
// element_at(tags, ...), no billing_period filter, a column cur2_table.sql
// does not declare, or (when exported is not nil) one the gateway's export
// does not select.
func checkAthenaQuery(sql string, declared, exported []string) []string {
	var problems []string
	code := sqlStrip(sql, false)
	if m := mapLookup.FindString(code); m != "" {
		problems = append(problems, "reads a map with "+m+"...]: use element_at, a missing key fails the query")
	}
	for _, m := range tagKeyUse.FindAllStringSubmatch(code, -1) {
		if !regexp.MustCompile(`(?i)element_at\s*\(\s*tags\s*,\s*$`).MatchString(m[1]) {
			problems = append(problems, "tag key not read with element_at(tags, ...): "+strings.TrimSpace(m[0]))
		}
	}
	if !strings.Contains(code, "'iamPrincipal/") && !strings.Contains(strings.ToLower(code), "iam_principal") {
		problems = append(problems, "reads neither iamPrincipal/ tags nor line_item_iam_principal")
	}
	if !billingPeriodFilter.MatchString(sqlStrip(sql, false)) {
		problems = append(problems, "no WHERE billing_period = 'YYYY-MM' filter: the query would scan every month")
	}
	for _, c := range columnsUsed(sql) {
		if !slices.Contains(declared, c) {
			problems = append(problems, "column "+c+" is not declared in cur2_table.sql")
		} else if exported != nil && c != "billing_period" && !slices.Contains(exported, c) {
			problems = append(problems, "column "+c+" is not selected by the gateway's CUR export (iam/cloudformation.yaml)")
		}
	}
	return problems
}

// exportColumns returns the columns the CloudFormation CUR export's
// QueryStatement selects.
func exportColumns(t *testing.T) []string {
	t.Helper()
	var query string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		for i := 0; i < len(n.Content); i++ {
			c := n.Content[i]
			if n.Kind == yaml.MappingNode && i%2 == 0 && c.Value == "QueryStatement" && i+1 < len(n.Content) {
				query = n.Content[i+1].Value
			}
			walk(c)
		}
	}
	for _, doc := range readYAMLDocs(t, filepath.Join("iam", "cloudformation.yaml")) {
		walk(doc)
	}
	sel, _, ok := strings.Cut(strings.ToUpper(query), " FROM ")
	if !ok || !strings.HasPrefix(sel, "SELECT ") {
		t.Fatalf("cloudformation.yaml: QueryStatement %q is not SELECT ... FROM", query)
	}
	var cols []string
	for c := range strings.SplitSeq(strings.TrimPrefix(sel, "SELECT "), ",") {
		cols = append(cols, strings.ToLower(strings.TrimSpace(c)))
	}
	return cols
}

func TestAthenaTable(t *testing.T) {
	ddl, err := os.ReadFile(filepath.Join(athenaDir, "cur2_table.sql"))
	if err != nil {
		t.Fatal(err)
	}
	cols, parts := ddlColumns(t, string(ddl))
	if diff := slices.Compare(parts, []string{"billing_period"}); diff != 0 {
		t.Errorf("cur2_table.sql partitions by %q, want [billing_period] (Data Exports writes BILLING_PERIOD=YYYY-MM)", parts)
	}
	for _, c := range []string{"line_item_iam_principal", "line_item_unblended_cost", "line_item_product_code", "line_item_usage_type", "line_item_line_item_type"} {
		if !slices.Contains(cols, c) {
			t.Errorf("cur2_table.sql does not declare %s", c)
		}
	}
	code := sqlStrip(string(ddl), false)
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\s*tags\s+map<string,\s*string>`),
		regexp.MustCompile(`(?m)^\s*resource_tags\s+map<string,\s*string>`),
		regexp.MustCompile(`(?i)STORED AS PARQUET`),
		regexp.MustCompile(`LOCATION 's3://<BUCKET>/<PREFIX>/<EXPORT_NAME>/data/'`),
		regexp.MustCompile(`'storage\.location\.template'\s*=\s*'s3://<BUCKET>/<PREFIX>/<EXPORT_NAME>/data/BILLING_PERIOD=\$\{billing_period\}/'`),
	} {
		if !want.MatchString(code) {
			t.Errorf("cur2_table.sql does not match %s", want)
		}
	}
	// Every export column the gateway's stack selects is declared, so
	// the table reads all of it.
	for _, c := range exportColumns(t) {
		if !slices.Contains(cols, c) {
			t.Errorf("the CloudFormation export selects %s, which cur2_table.sql does not declare", c)
		}
	}
}

func TestAthenaQueries(t *testing.T) {
	ddl, err := os.ReadFile(filepath.Join(athenaDir, "cur2_table.sql"))
	if err != nil {
		t.Fatal(err)
	}
	cols, parts := ddlColumns(t, string(ddl))
	declared := append(cols, parts...)
	exported := exportColumns(t)
	for _, name := range athenaQueries {
		t.Run(name, func(t *testing.T) {
			sql, err := os.ReadFile(filepath.Join(athenaDir, name))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range checkAthenaQuery(string(sql), declared, exported) {
				t.Error(p)
			}
			if used := columnsUsed(string(sql)); len(used) < 5 {
				t.Errorf("found only %q as columns: the column check is not seeing the query", used)
			}
			code := sqlStrip(string(sql), false)
			for _, want := range []string{"line_item_line_item_type = 'Usage'", "'AmazonBedrock%'", "(Amazon Bedrock Edition)", "gateway_role_patterns", "assumed-role/"} {
				if !strings.Contains(code, want) {
					t.Errorf("%s does not contain %q", name, want)
				}
			}
		})
	}
}

// TestAthenaReadmeSQL holds the README's SQL examples to the same rules,
// except for the billing period filter some of them need not have.
func TestAthenaReadmeSQL(t *testing.T) {
	md, err := os.ReadFile(filepath.Join(athenaDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	ddl, err := os.ReadFile(filepath.Join(athenaDir, "cur2_table.sql"))
	if err != nil {
		t.Fatal(err)
	}
	cols, parts := ddlColumns(t, string(ddl))
	declared := append(cols, parts...)
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(md), -1)
	if len(blocks) == 0 {
		t.Fatal("README.md has no sql block")
	}
	for _, b := range blocks {
		if m := mapLookup.FindString(b[1]); m != "" {
			t.Errorf("README.md SQL reads a map with %s...]: %s", m, b[1])
		}
		for _, c := range columnsUsed(b[1]) {
			if !slices.Contains(declared, c) {
				t.Errorf("README.md SQL uses %s, not declared in cur2_table.sql", c)
			}
		}
	}
	// The prose must not teach the subscript form either, outside the
	// sentence that warns against it.
	for _, line := range strings.Split(string(md), "\n") {
		if strings.Contains(line, "tags['") && !strings.Contains(line, "never") {
			t.Errorf("README.md: %q reads a tag by subscript", line)
		}
	}
}

// TestAthenaChecksCatchMistakes proves the static checks fail on what they
// guard against, so that a passing TestAthenaQueries means something.
func TestAthenaChecksCatchMistakes(t *testing.T) {
	declared := []string{"line_item_iam_principal", "line_item_unblended_cost", "tags", "product", "billing_period", "line_item_usage_type"}
	const good = `SELECT line_item_iam_principal, element_at(tags, 'iamPrincipal/team') AS team,
  sum(line_item_unblended_cost) AS cost -- tags['x'] in a comment is fine
FROM cur2 WHERE billing_period = '2026-11' GROUP BY 1, 2`
	if p := checkAthenaQuery(good, declared, nil); len(p) != 0 {
		t.Fatalf("good query: %q, want no problem", p)
	}
	tests := []struct {
		name, sql, want string
	}{
		{"subscript", strings.Replace(good, "element_at(tags, 'iamPrincipal/team')", "tags['iamPrincipal/team']", 1), "use element_at"},
		{"subscript with space", strings.Replace(good, "element_at(tags, 'iamPrincipal/team')", "tags ['iamPrincipal/team']", 1), "use element_at"},
		{"product subscript", strings.Replace(good, "line_item_iam_principal,", "line_item_iam_principal, product['product_name'],", 1), "use element_at"},
		{"tag key elsewhere", strings.Replace(good, "element_at(tags, 'iamPrincipal/team')", "map_keys(tags) = 'iamPrincipal/team'", 1), "not read with element_at"},
		{"no billing period", strings.Replace(good, "billing_period = '2026-11'", "line_item_usage_type LIKE '%token%'", 1), "no WHERE billing_period"},
		{"billing period only selected", strings.Replace(good, "WHERE billing_period = '2026-11'", "WHERE 1 = 1 -- billing_period = '2026-11'", 1), "no WHERE billing_period"},
		{"undeclared column", strings.Replace(good, "sum(line_item_unblended_cost)", "sum(line_item_net_unblended_cost)", 1), "line_item_net_unblended_cost is not declared"},
		{"undeclared bill column", strings.Replace(good, "GROUP BY 1, 2", "AND bill_payer_account_id = '1' GROUP BY 1, 2", 1), "bill_payer_account_id is not declared"},
	}
	for _, tt := range tests {
		p := checkAthenaQuery(tt.sql, declared, nil)
		if !slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, tt.want) }) {
			t.Errorf("%s: problems %q, want one containing %q", tt.name, p, tt.want)
		}
	}
	if p := checkAthenaQuery(good, declared, []string{"line_item_iam_principal", "tags"}); !slices.ContainsFunc(p, func(s string) bool {
		return strings.Contains(s, "line_item_unblended_cost is not selected by the gateway's CUR export")
	}) {
		t.Errorf("export check: problems %q, want line_item_unblended_cost not selected", p)
	}
}
