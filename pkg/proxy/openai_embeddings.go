package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/bedrock-gateway/gateway/pkg/openai"
	"github.com/bedrock-gateway/gateway/pkg/usage"
)

const opEmbeddings = "Embeddings"

// directUsage is what the gateway learned from Bedrock answers it read
// itself rather than through the response tap (embeddings make one
// InvokeModel call per batch of texts).
type directUsage struct {
	tokens    usage.Tokens
	requestID string // the last call's
	errorType string // Bedrock's exception, if a call failed
}

// embeddings serves POST /v1/embeddings for Bedrock's text embedding
// models (Titan Text Embeddings, Cohere Embed) through InvokeModel: the
// texts go in batches the model takes (one for Titan, up to 96 for
// Cohere), one signed call each, one after the other; the answer is
// OpenAI's embeddings list and the ledger holds the tokens of every call
// Bedrock answered, also when a later one fails.
func (p *Proxy) embeddings(w http.ResponseWriter, r *http.Request) {
	st := stateFrom(r.Context())
	st.op = opEmbeddings
	out := &st.outVal
	out.method = http.MethodPost
	body, err := p.readBody(w, r, out)
	defer func() {
		putBuf(out.readBuf)
		out.readBuf = nil
	}()
	if err != nil {
		p.fail(w, r, err)
		return
	}
	req, perr := openai.ParseEmbeddingsRequest(body)
	if perr != nil {
		p.fail(w, r, openAIRequestError(perr))
		return
	}
	modelID, _ := p.cfg.OpenAI.resolveModel(req.Model)
	model, ok := openai.LookupEmbeddingModel(modelID)
	if id, err := parseModelID(modelID); err != nil || id != modelID || !ok {
		p.fail(w, r, &Error{Status: http.StatusBadRequest, Type: typeValidation, param: "model",
			Msg: "model is not a Bedrock text embedding model the gateway serves (Titan Text Embeddings v1/v2, Cohere Embed v3/v4) or an alias of one"})
		return
	}
	st.modelID = modelID
	spec, e := p.resolve(*st.identity)
	if e != nil {
		p.fail(w, r, e)
		return
	}
	st.specVal = spec
	st.spec = &st.specVal
	if e := p.admit(r.Context(), *st.identity, opEmbeddings, modelID); e != nil {
		p.fail(w, r, e)
		return
	}
	// Every body is built before the first call: a text the model cannot
	// take refuses the request before anything is billed.
	var bodies [][]byte
	var counts []int
	for i := 0; i < len(req.Input); i += model.Batch() {
		texts := req.Input[i:min(i+model.Batch(), len(req.Input))]
		b, err := model.InvokeBody(texts, req.Dimensions)
		if err != nil {
			p.fail(w, r, openAIRequestError(err))
			return
		}
		bodies, counts = append(bodies, b), append(counts, len(texts))
	}
	header := outboundHeader(http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}}, p.cfg.UserAgent)
	var md map[string]string
	if !p.cfg.DisableMetadataStamp {
		md = identityMetadata(st.identity, st.spec)
	}
	if err := stampInvoke(header, md); err != nil {
		p.fail(w, r, errValidation(err.Error(), err))
		return
	}
	creds, e := p.credentials(r.Context(), spec)
	if e != nil {
		p.fail(w, r, e)
		return
	}
	st.direct = &directUsage{}
	path := strings.TrimSuffix(p.cfg.Endpoint.EscapedPath(), "/") + "/model/" + escapeLabel(modelID) + "/invoke"
	var vectors [][]float64
	for i, b := range bodies {
		sum := sha256.Sum256(b)
		o := &outbound{method: http.MethodPost, rawPath: path, header: header.Clone(), body: b,
			payloadHash: hex.EncodeToString(sum[:]), creds: creds}
		up, err := p.upstreamRequest(r.Context(), o)
		if err != nil {
			p.fail(w, r, proxyError(r.Context(), err))
			return
		}
		if i == 0 {
			p.cfg.Metrics.observeOverhead(opEmbeddings, p.cfg.Now().Sub(st.start))
		}
		span := st.trace.startCall(r.Context(), p.cfg.Endpoint.Host, opInvoke, modelID)
		resp, err := p.upstream.RoundTrip(up)
		if err != nil {
			e := proxyError(r.Context(), err)
			endCall(span, nil, 0, e)
			p.fail(w, r, e)
			return
		}
		st.direct.requestID = firstNonEmpty(resp.Header.Get("X-Amzn-Requestid"), resp.Header.Get("X-Amz-Request-Id"))
		if resp.StatusCode != http.StatusOK {
			st.direct.errorType = sanitizeErrorType(resp.Header.Get("X-Amzn-Errortype"))
			endCall(span, resp, 0, nil)
			err := p.openAIUpstreamError(w, resp)
			resp.Body.Close()
			if err != nil {
				p.log.WarnContext(r.Context(), "relaying Bedrock's error failed", "error", err)
			}
			return
		}
		answer, err := io.ReadAll(io.LimitReader(resp.Body, maxTapBytes))
		resp.Body.Close()
		if err != nil {
			e := proxyError(r.Context(), err)
			endCall(span, resp, 0, e)
			p.fail(w, r, e)
			return
		}
		vecs, bodyTokens, err := model.Vectors(answer, counts[i])
		tokens := bodyTokens
		if n, herr := strconv.ParseInt(resp.Header.Get("X-Amzn-Bedrock-Input-Token-Count"), 10, 64); herr == nil && n >= 0 {
			tokens = n // Bedrock's own count wins, as for InvokeModel
		}
		st.direct.tokens.Input += tokens
		if err != nil {
			e := &Error{Status: http.StatusBadGateway, Type: typeUnavailable, Msg: "Bedrock's answer could not be read", Err: err}
			endCall(span, resp, tokens, e)
			p.fail(w, r, e)
			return
		}
		endCall(span, resp, tokens, nil)
		vectors = append(vectors, vecs...)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openai.EmbeddingsResponse(req.Model, vectors, st.direct.tokens.Input, req.EncodingFormat))
}
