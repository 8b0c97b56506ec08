-- Amazon Bedrock spend for one billing period, per IAM principal, with the
-- gateway's user (the STS session name), the team / tenant / cost-center
-- session tags, and the usage type (Region, model and token direction, e.g.
-- USE1-Claude4.6Sonnet-input-tokens). Runs on the cur2 table of
-- cur2_table.sql.
--
-- Edit before running:
--   1. the billing period in the WHERE clause ('2026-11'). It is a literal,
--      not a parameter, so that Athena prunes the scan to that month's
--      partition.
--   2. gateway_role_patterns: the names of the IAM roles the gateway
--      assumes for its callers, as LIKE patterns. One role for everyone is
--      'BedrockInvocationRole'; one role per tenant might be
--      'BedrockInvocationRole-%'. In LIKE, _ and % are wildcards.
--
-- Bedrock lines are found by line_item_product_code (AmazonBedrock and the
-- other AmazonBedrock* codes) or, for models AWS Marketplace sells through
-- Bedrock (Anthropic's Claude among them), by the product name AWS gives
-- them, "<model> (Amazon Bedrock Edition)": those lines carry a Marketplace
-- product code, not a Bedrock one.
--
-- Tag columns use element_at: a line without the tag (a caller outside the
-- gateway, or a tag not yet activated) gives NULL, where tags['key'] would
-- fail the whole query (Trino raises an error for a missing map key).
-- Session tags reach this column only once activated as cost allocation
-- tags, 24 to 48 hours later (see README.md); the session name needs no
-- activation.

WITH params AS (
  SELECT ARRAY[
    'BedrockInvocationRole'          -- EDIT: the gateway's invocation role(s)
  ] AS gateway_role_patterns
),
bedrock AS (
  SELECT
    line_item_iam_principal AS principal,
    -- arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION; NULL for IAM users
    -- and for lines without a principal.
    regexp_extract(line_item_iam_principal,
                   '^arn:aws[a-z-]*:sts::[0-9]{12}:assumed-role/([^/]+)/.+$', 1) AS role_name,
    regexp_extract(line_item_iam_principal,
                   '^arn:aws[a-z-]*:sts::[0-9]{12}:assumed-role/[^/]+/(.+)$', 1) AS session_name,
    element_at(tags, 'iamPrincipal/team')        AS team,
    element_at(tags, 'iamPrincipal/tenant')      AS tenant,
    element_at(tags, 'iamPrincipal/cost-center') AS cost_center,
    line_item_usage_account_id                   AS account_id,
    line_item_usage_type                         AS usage_type,
    element_at(product, 'product_name')          AS product_name,
    line_item_usage_amount,
    line_item_unblended_cost
  FROM cur2
  WHERE billing_period = '2026-11'               -- EDIT: the month, YYYY-MM
    AND line_item_line_item_type = 'Usage'
    AND (line_item_product_code LIKE 'AmazonBedrock%'
         OR element_at(product, 'product_name') LIKE '%(Amazon Bedrock Edition)%')
)
SELECT
  coalesce(nullif(b.principal, ''), '(no principal)') AS principal,
  coalesce(any_match(p.gateway_role_patterns, r -> b.role_name LIKE r), false) AS via_gateway,
  b.session_name                    AS user_session,
  b.team,
  b.tenant,
  b.cost_center,
  b.account_id,
  b.usage_type,
  b.product_name,
  sum(b.line_item_usage_amount)     AS usage_amount,  -- tokens for token usage types
  sum(b.line_item_unblended_cost)   AS unblended_cost_usd,
  count(*)                          AS line_items
FROM bedrock b
CROSS JOIN params p
GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
ORDER BY unblended_cost_usd DESC, principal, usage_type;

-- Roll-ups: wrap the query above, or replace the final SELECT with, e.g.
--   SELECT team, sum(line_item_unblended_cost) ... GROUP BY team
-- Lines whose tag is NULL are spend the tag does not cover: untagged
-- callers, or usage billed before the tag was activated.
