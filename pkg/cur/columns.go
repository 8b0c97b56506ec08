package cur

// CUR 2.0 column names, as AWS's table dictionary spells them
// (https://docs.aws.amazon.com/cur/latest/userguide/table-dictionary-cur2.html).
// The types in the comments are those of the dictionary and of the Glue
// schema AWS's Cloud Intelligence Dashboards declare for CUR 2.0 Parquet
// exports (aws-solutions-library-samples/cloud-intelligence-dashboards-data-collection,
// data-exports/deploy/data-exports-aggregation.yaml).
const (
	colLineItemID     = "identity_line_item_id"           // string
	colTimeInterval   = "identity_time_interval"          // string, "start/end"
	colBillingEntity  = "bill_billing_entity"             // string
	colBillType       = "bill_bill_type"                  // string
	colPayerAccount   = "bill_payer_account_id"           // string
	colPeriodStart    = "bill_billing_period_start_date"  // timestamp
	colPeriodEnd      = "bill_billing_period_end_date"    // timestamp
	colUsageAccount   = "line_item_usage_account_id"      // string
	colLineItemType   = "line_item_line_item_type"        // string
	colUsageStart     = "line_item_usage_start_date"      // timestamp
	colUsageEnd       = "line_item_usage_end_date"        // timestamp
	colProductCode    = "line_item_product_code"          // string
	colUsageType      = "line_item_usage_type"            // string
	colOperation      = "line_item_operation"             // string
	colPrincipal      = "line_item_iam_principal"         // string; needs INCLUDE_IAM_PRINCIPAL_DATA
	colUsageAmount    = "line_item_usage_amount"          // double
	colCurrency       = "line_item_currency_code"         // string
	colUnblendedRate  = "line_item_unblended_rate"        // string
	colUnblendedCost  = "line_item_unblended_cost"        // double
	colDescription    = "line_item_line_item_description" // string
	colProduct        = "product"                         // map<string,string>
	colProductName    = "product_product_name"            // string; legacy CUR name, read if present
	colProductRegion  = "product_region_code"             // string
	colResourceTags   = "resource_tags"                   // map<string,string>
	colTags           = "tags"                            // map<string,string>
	productNameKey    = "product_name"                    // key of the product map
	productServiceKey = "servicecode"                     // key of the product map
)

// requiredColumns are the columns a bill must have for Reconcile to do
// its job. A file without one is refused as a whole, naming the column:
// line_item_iam_principal missing means the export was created without
// INCLUDE_IAM_PRINCIPAL_DATA, tags missing means it does not select the
// tags column; either way the reconciliation would be meaningless.
var requiredColumns = []string{
	colPeriodStart,
	colUsageAccount,
	colLineItemType,
	colUsageStart,
	colProductCode,
	colUsageType,
	colPrincipal,
	colUsageAmount,
	colUnblendedCost,
	colTags,
}

// colKind is how a column's values are typed.
type colKind int

const (
	kindString colKind = iota
	kindDouble
	kindTimestamp
	kindMap
)

// readColumns are the columns the readers look at, with their kinds;
// every other column is ignored.
var readColumns = map[string]colKind{
	colBillingEntity: kindString,
	colPeriodStart:   kindTimestamp,
	colUsageAccount:  kindString,
	colLineItemType:  kindString,
	colUsageStart:    kindTimestamp,
	colUsageEnd:      kindTimestamp,
	colProductCode:   kindString,
	colUsageType:     kindString,
	colOperation:     kindString,
	colPrincipal:     kindString,
	colUsageAmount:   kindDouble,
	colCurrency:      kindString,
	colUnblendedCost: kindDouble,
	colProduct:       kindMap,
	colProductName:   kindString,
	colResourceTags:  kindMap,
	colTags:          kindMap,
}
