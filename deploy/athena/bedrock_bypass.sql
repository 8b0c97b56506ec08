-- Amazon Bedrock spend for one billing period by principals that are NOT
-- the gateway's per-caller role sessions: IAM users, Bedrock API keys
-- (billed to their IAM user, ...:user/BedrockAPIKey-...), other roles, and
-- lines with no principal at all. With every caller meant to go through
-- the gateway, each row here is usage that went around it; an empty result
-- is the goal. Runs on the cur2 table of cur2_table.sql.
--
-- Edit before running, as in bedrock_spend_by_principal.sql: the billing
-- period literal (kept a literal so Athena prunes to that partition) and
-- gateway_role_patterns (LIKE patterns of the gateway's invocation role
-- names; one role per tenant: 'BedrockInvocationRole-%').
--
-- "(no principal)" collects Bedrock lines the bill does not attribute:
-- usage before IAM principal data starts (April 8, 2026, per AWS's Cloud
-- Intelligence Dashboards), an export created without
-- INCLUDE_IAM_PRINCIPAL_DATA, and APIs AWS does not attribute yet (its
-- Bedrock guide names bedrock-runtime's InvokeModel, Converse and Chat
-- Completions; bedrock-mantle "coming soon"), and charges that are not
-- per call.

WITH params AS (
  SELECT ARRAY[
    'BedrockInvocationRole'          -- EDIT: the gateway's invocation role(s)
  ] AS gateway_role_patterns
),
bedrock AS (
  SELECT
    coalesce(nullif(line_item_iam_principal, ''), '(no principal)') AS principal,
    regexp_extract(line_item_iam_principal,
                   '^arn:aws[a-z-]*:sts::[0-9]{12}:assumed-role/([^/]+)/.+$', 1) AS role_name,
    element_at(tags, 'iamPrincipal/team') AS team,
    line_item_usage_account_id            AS account_id,
    line_item_usage_type                  AS usage_type,
    line_item_usage_start_date,
    line_item_usage_amount,
    line_item_unblended_cost
  FROM cur2
  WHERE billing_period = '2026-11'        -- EDIT: the month, YYYY-MM
    AND line_item_line_item_type = 'Usage'
    AND (line_item_product_code LIKE 'AmazonBedrock%'
         OR element_at(product, 'product_name') LIKE '%(Amazon Bedrock Edition)%')
)
SELECT
  b.principal,
  b.account_id,
  b.team,
  b.usage_type,
  sum(b.line_item_usage_amount)     AS usage_amount,
  sum(b.line_item_unblended_cost)   AS unblended_cost_usd,
  min(b.line_item_usage_start_date) AS first_seen,
  max(b.line_item_usage_start_date) AS last_seen,
  count(*)                          AS line_items
FROM bedrock b
CROSS JOIN params p
-- role_name is NULL for anything but a role session, and then the match is
-- NULL too: coalesce counts it as not the gateway.
WHERE NOT coalesce(any_match(p.gateway_role_patterns, r -> b.role_name LIKE r), false)
GROUP BY 1, 2, 3, 4
ORDER BY unblended_cost_usd DESC, principal, usage_type;
