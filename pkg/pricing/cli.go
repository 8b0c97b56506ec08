package pricing

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"text/tabwriter"
)

// perMillion is a rate per token written as dollars per million tokens,
// as the price lists quote it: exact, since a rate is a whole number of
// picodollars.
func perMillion(rate Money) string { return (rate * 1_000_000).String() }

// Run is `gateway prices`: the catalogue the gateway prices requests with
// (the shipped table with a config's overrides and discount when load is
// given --config), as a table or JSON, filtered by Region and by a model
// pattern (path.Match: "anthropic.*"). It returns 0, or 2 with the reason
// on stderr for a bad flag or config. load reads the pricing block of a
// gateway config file.
func Run(args []string, stdout, stderr io.Writer, load func(file string) (Config, error)) int {
	fs := flag.NewFlagSet("gateway prices", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "the gateway's config, whose pricing block overrides and extends the shipped table")
	region := fs.String("region", "", "only this Region (e.g. us-east-1)")
	model := fs.String("model", "", "only models matching this `pattern` (path.Match: anthropic.*)")
	format := fs.String("format", "table", "output: table or json")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "gateway prices: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected arguments: %q", fs.Args()))
	}
	if *format != "table" && *format != "json" {
		return fail(fmt.Errorf("--format: must be table or json, got %q", *format))
	}
	if _, err := path.Match(*model, ""); err != nil {
		return fail(fmt.Errorf("--model: %w", err))
	}
	var cfg Config
	if *configFile != "" {
		var err error
		if cfg, err = load(*configFile); err != nil {
			return fail(err)
		}
	}
	cat, err := New(cfg)
	if err != nil {
		return fail(err)
	}
	var rows []Price
	for _, p := range cat.Prices() {
		if ok, _ := path.Match(*model, p.Model); (*model == "" || ok) && (*region == "" || p.Region == *region || p.Region == "") {
			rows = append(rows, p)
		}
	}
	if *format == "json" {
		type row struct {
			Model      string `json:"model"`
			Region     string `json:"region"`
			Scope      string `json:"scope"`
			UsageName  string `json:"usage_name"`
			Input      string `json:"input_per_mtok"`
			Output     string `json:"output_per_mtok"`
			CacheRead  string `json:"cache_read_per_mtok"`
			CacheWrite string `json:"cache_write_per_mtok"`
			Source     string `json:"source"`
		}
		out := struct {
			AsOf   string `json:"as_of"`
			Prices []row  `json:"prices"`
		}{AsOf: cat.AsOf(), Prices: make([]row, 0, len(rows))}
		for _, p := range rows {
			out.Prices = append(out.Prices, row{p.Model, p.Region, p.Scope, p.UsageName, perMillion(p.Rates[Input]),
				perMillion(p.Rates[Output]), perMillion(p.Rates[CacheRead]), perMillion(p.Rates[CacheWrite]), p.Source})
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return fail(err)
		}
		return 0
	}
	fmt.Fprintf(stdout, "On-demand prices as of %s, in dollars per million tokens.\n\n", cat.AsOf())
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL\tREGION\tSCOPE\tUSAGE NAME\tINPUT\tOUTPUT\tCACHE READ\tCACHE WRITE\tSOURCE")
	for _, p := range rows {
		r := p.Region
		if r == "" {
			r = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Model, r, p.Scope, p.UsageName, perMillion(p.Rates[Input]),
			perMillion(p.Rates[Output]), perMillion(p.Rates[CacheRead]), perMillion(p.Rates[CacheWrite]), p.Source)
	}
	if err := tw.Flush(); err != nil {
		return fail(err)
	}
	return 0
}
