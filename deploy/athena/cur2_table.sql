-- Athena (Trino) table over a CUR 2.0 Data Export delivered as Parquet.
--
-- Replace the three placeholders in LOCATION and storage.location.template
-- before running:
--   <BUCKET>       the export's S3 bucket            (e.g. acme-billing)
--   <PREFIX>       the export's S3 prefix             (e.g. cur2; the gateway's
--                  CloudFormation stack defaults CurS3Prefix to cur2)
--   <EXPORT_NAME>  the export's name                  (e.g. bedrock-gateway-cur2)
--
-- Data Exports writes CUR 2.0 to
--   s3://<BUCKET>/<PREFIX>/<EXPORT_NAME>/data/BILLING_PERIOD=YYYY-MM/
-- (AWS Data Exports user guide, "Understanding export delivery"). The
-- partition directory is upper case, which MSCK REPAIR TABLE does not map
-- to a lower-case column, so partitions are found by partition projection
-- instead: no crawler, no ALTER TABLE per month. Querying a month that has
-- no data yet returns no rows, not an error.
--
-- Columns and types follow AWS's CUR 2.0 table dictionary
-- (https://docs.aws.amazon.com/cur/latest/userguide/table-dictionary-cur2.html)
-- and the Glue schema of AWS's Cloud Intelligence Dashboards for CUR 2.0
-- Parquet exports. Athena reads Parquet columns by name, so a column
-- declared here that an export does not select reads as NULL; the queries
-- in this directory use only columns the gateway's own export selects
-- (deploy/iam/cloudformation.yaml, CurExport).
--
-- Use "Overwrite existing export file" (OVERWRITE_REPORT) for the export:
-- with "Create new export file" each refresh adds another copy of the
-- month under the same partition and every sum here would count it again.

CREATE EXTERNAL TABLE IF NOT EXISTS cur2 (
  bill_bill_type                    string,
  bill_billing_entity               string,
  bill_billing_period_end_date      timestamp,
  bill_billing_period_start_date    timestamp,
  bill_invoice_id                   string,
  bill_invoicing_entity             string,
  bill_payer_account_id             string,
  bill_payer_account_name           string,
  cost_category                     map<string,string>,
  discount                          map<string,double>,
  discount_bundled_discount         double,
  discount_total_discount           double,
  identity_line_item_id             string,
  identity_time_interval            string,
  line_item_availability_zone       string,
  line_item_blended_cost            double,
  line_item_blended_rate            string,
  line_item_currency_code           string,
  line_item_iam_principal           string,
  line_item_legal_entity            string,
  line_item_line_item_description   string,
  line_item_line_item_type          string,
  line_item_net_unblended_cost      double,
  line_item_net_unblended_rate      string,
  line_item_normalization_factor    double,
  line_item_normalized_usage_amount double,
  line_item_operation               string,
  line_item_product_code            string,
  line_item_resource_id             string,
  line_item_tax_type                string,
  line_item_unblended_cost          double,
  line_item_unblended_rate          string,
  line_item_usage_account_id        string,
  line_item_usage_account_name      string,
  line_item_usage_amount            double,
  line_item_usage_end_date          timestamp,
  line_item_usage_start_date        timestamp,
  line_item_usage_type              string,
  pricing_currency                  string,
  pricing_public_on_demand_cost     double,
  pricing_public_on_demand_rate     string,
  pricing_purchase_option           string,
  pricing_rate_code                 string,
  pricing_term                      string,
  pricing_unit                      string,
  product                           map<string,string>,
  product_fee_code                  string,
  product_fee_description           string,
  product_from_location             string,
  product_location                  string,
  product_operation                 string,
  product_pricing_unit              string,
  product_product_family            string,
  product_region_code               string,
  product_servicecode               string,
  product_sku                       string,
  product_usagetype                 string,
  reservation_effective_cost        double,
  resource_tags                     map<string,string>,
  savings_plan_savings_plan_effective_cost double,
  tags                              map<string,string>
)
PARTITIONED BY (
  billing_period string  -- YYYY-MM, from the BILLING_PERIOD=YYYY-MM directory
)
STORED AS PARQUET
LOCATION 's3://<BUCKET>/<PREFIX>/<EXPORT_NAME>/data/'
TBLPROPERTIES (
  'projection.enabled'                         = 'true',
  'projection.billing_period.type'             = 'date',
  'projection.billing_period.format'           = 'yyyy-MM',
  'projection.billing_period.range'            = '2026-01,NOW',
  'projection.billing_period.interval'         = '1',
  'projection.billing_period.interval.unit'    = 'MONTHS',
  'storage.location.template'                  = 's3://<BUCKET>/<PREFIX>/<EXPORT_NAME>/data/BILLING_PERIOD=${billing_period}/'
);

-- Without partition projection, add each month by hand instead:
--   ALTER TABLE cur2 ADD IF NOT EXISTS PARTITION (billing_period = '2026-11')
--   LOCATION 's3://<BUCKET>/<PREFIX>/<EXPORT_NAME>/data/BILLING_PERIOD=2026-11/';
