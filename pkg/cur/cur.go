// Package cur reads and writes AWS Cost and Usage Report 2.0 (CUR 2.0)
// Data Export files and reconciles the Bedrock lines of such a bill with
// what the gateway's usage ledger says it sent.
//
// The gateway signs every Bedrock call with a per-user STS session, so
// AWS bills each call to
// arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION in the
// line_item_iam_principal column, with the session tags it passed in the
// tags column under the "iamPrincipal/" prefix. Reconcile checks that
// this really happened: that nobody used Bedrock around the gateway, that
// the bill carries the tags the gateway sent, and that the tokens and
// dollars AWS billed match the ledger.
//
// Column names and types follow AWS's CUR 2.0 table dictionary
// (https://docs.aws.amazon.com/cur/latest/userguide/table-dictionary-cur2.html)
// and the Glue schema AWS's Cloud Intelligence Dashboards declare for
// CUR 2.0 Parquet exports (string, double, timestamp and
// map<string,string> columns).
//
// Formats. Data Exports writes CUR 2.0 as Parquet or as gzip-compressed
// CSV; the readers take both, and plain CSV, telling them apart by
// content. In Parquet the tags, resource_tags and product columns are
// MAP<STRING,STRING>; in CSV they are JSON objects, the way AWS shows
// them ({"iamPrincipal/team":"data-science"}). Columns may come in any
// order and unknown ones are ignored; a file without a column Reconcile
// needs is refused, naming the column.
//
// Money. CUR amounts are doubles. A double is read as the shortest
// decimal that is the same double, then rounded half to even to the
// picodollar, so that a cost of 0.0693 is exactly pricing.Money 0.0693
// and sums are exact (see Quantity).
//
// Which lines count. Bedrock usage is sold by AWS (product code
// AmazonBedrock) or, for some third-party models, through AWS
// Marketplace (product name "... (Amazon Bedrock Edition)"); IsBedrock
// takes both. Reconcile compares lines of type Usage only: taxes,
// credits, refunds and discounts are separate lines that the gateway's
// catalogue prices cannot predict, so they are totalled, not compared.
package cur

import (
	"strings"
	"time"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// Line is one line item of a CUR 2.0 bill, reduced to the columns the
// gateway needs. Path and Row say where it came from, so that a finding
// can be traced back to the file.
type Line struct {
	// Path is the name the file was read under; Row is the line's
	// 1-based position among the file's data rows (the header of a CSV
	// file is not counted; for Parquet it is the row index plus one).
	Path string
	Row  int

	// BillingPeriod is bill_billing_period_start_date: the first instant
	// (UTC) of the month the line is billed in.
	BillingPeriod time.Time
	// UsageStart and UsageEnd are line_item_usage_start_date (inclusive)
	// and line_item_usage_end_date (exclusive), UTC. UsageEnd is zero
	// when the file has no such column.
	UsageStart time.Time
	UsageEnd   time.Time

	// Account is line_item_usage_account_id, the account that used the
	// service.
	Account string
	// ProductCode is line_item_product_code: "AmazonBedrock" for usage
	// AWS sells itself; models sold through AWS Marketplace carry the
	// listing's own code, which is why ProductName is kept too.
	ProductCode string
	// ProductName is product['product_name'] (CUR 2.0 keeps it in the
	// product map), e.g. "Amazon Bedrock" or
	// "Claude Sonnet 4.6 (Amazon Bedrock Edition)". Empty when the file
	// has no product column.
	ProductName string
	// BillingEntity is bill_billing_entity: "AWS" or "AWS Marketplace".
	// Empty when the file has no such column.
	BillingEntity string
	// LineItemType is line_item_line_item_type: "Usage", "Tax",
	// "Credit", "Refund", "Fee", "EdpDiscount", ...
	LineItemType string
	// Principal is line_item_iam_principal, the caller's ARN; empty for
	// services that do not record one and for exports created without
	// INCLUDE_IAM_PRINCIPAL_DATA.
	Principal string
	// UsageType is line_item_usage_type, e.g.
	// "USE1-Claude4.6Sonnet-input-tokens".
	UsageType string
	// Operation is line_item_operation; empty when the file has no such
	// column.
	Operation string
	// UsageAmount is line_item_usage_amount, exactly as a decimal (see
	// Quantity for how the double AWS writes becomes one).
	UsageAmount Quantity
	// UnblendedCost is line_item_unblended_cost, rounded to the
	// picodollar as Quantity describes.
	UnblendedCost pricing.Money
	// Currency is line_item_currency_code ("USD"); empty when the file
	// has no such column.
	Currency string

	// Tags is the tags map column: cost allocation tags of every kind,
	// keyed as the bill keys them ("iamPrincipal/team", ...). Nil when
	// the line has none.
	Tags map[string]string
	// ResourceTags is the resource_tags map column; nil when the line
	// has none or the file has no such column.
	ResourceTags map[string]string
}

// bedrockProductCodes are the product and service codes under which AWS
// sells Bedrock itself. "AmazonBedrock" is the one the bill uses; the
// other two are service codes of the AWS Price List that Bedrock prices
// are published under, kept in case a line carries one of them.
var bedrockProductCodes = map[string]bool{
	"AmazonBedrock":                 true,
	"AmazonBedrockService":          true,
	"AmazonBedrockFoundationModels": true,
}

// marketplaceSuffix ends the product name of a model a third party sells
// through AWS Marketplace for use in Bedrock (Anthropic's Claude models,
// among others): "Claude Opus 4.6 (Amazon Bedrock Edition)". Such lines
// have a Marketplace product code, not "AmazonBedrock".
const marketplaceSuffix = "(Amazon Bedrock Edition)"

// IsBedrock reports whether l is Bedrock model usage, whoever sells the
// model: AWS itself (product code "AmazonBedrock") or a third party
// through AWS Marketplace (product name ending in
// "(Amazon Bedrock Edition)"). Lines of other services are not.
func IsBedrock(l Line) bool {
	if bedrockProductCodes[l.ProductCode] {
		return true
	}
	name := strings.TrimSpace(l.ProductName)
	return name == "Amazon Bedrock" || strings.HasSuffix(name, marketplaceSuffix)
}
