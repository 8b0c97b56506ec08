package fakeaws

// Prompt caching, emulated deterministically. A request marks cache
// checkpoints (Converse "cachePoint" blocks; Anthropic "cache_control" on
// a block). The prompt is hashed with the account and the model ID in
// the order the model reads it (tools, system, messages), cache markers
// excluded, giving a key at every block boundary. A request reads the
// longest cached prefix among its checkpoints and the block boundaries up
// to 20 blocks before each checkpoint (Anthropic's automatic prefix
// check), and writes the tokens from there to its last checkpoint. Every
// checkpoint's entry then lives for its TTL from Now (5 minutes, or 1
// hour if asked); a read refreshes the entry for its own TTL, as
// Anthropic's cache does.

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"time"
)

const (
	// maxCachePoints is the number of checkpoints a request may mark:
	// Anthropic allows at most 4 blocks with cache_control, and Bedrock
	// documents up to 4 cache checkpoints per request (Bedrock user
	// guide, "Prompt caching").
	maxCachePoints = 4
	// defaultCacheTTL and longCacheTTL are the cache TTLs: "5m", the
	// default, and "1h" (CacheTTL enum, Bedrock Runtime service model;
	// Anthropic cache_control ttl).
	defaultCacheTTL = 5 * time.Minute
	longCacheTTL    = time.Hour
	// cacheLookbackBlocks is how many block boundaries before a
	// checkpoint are checked for a cached prefix: "about 20" (Anthropic
	// prompt-caching documentation).
	cacheLookbackBlocks = 20
	// promptCacheSweep is the cache size at which expired entries are
	// dropped, so a long-running fake holds only live entries.
	promptCacheSweep = 4096
)

// cacheBreakpoint is a point of a request's prompt where a cached prefix
// may end: a block boundary, or a checkpoint the request marked.
type cacheBreakpoint struct {
	// key identifies the account, model and prompt before the point.
	key string
	// words counts the prompt's words before the point.
	words int64
	// explicit marks a checkpoint; ttl is its TTL.
	explicit bool
	ttl      time.Duration
}

// cacheEntry is a cached prefix: when it expires, and the TTL a read
// renews it for.
type cacheEntry struct {
	expires time.Time
	ttl     time.Duration
}

// promptPrefix hashes a prompt as it is walked and records its block
// boundaries and cache checkpoints.
type promptPrefix struct {
	h           hash.Hash
	words       int64
	points      []cacheBreakpoint
	checkpoints int
}

func newPromptPrefix(account, modelID string) *promptPrefix {
	p := &promptPrefix{h: sha256.New()}
	p.write([]byte(account))
	p.write([]byte(modelID))
	return p
}

// write adds one length-prefixed item to the hash, so item boundaries are
// unambiguous.
func (p *promptPrefix) write(b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	p.h.Write(n[:])
	p.h.Write(b)
}

// add appends one block of the prompt (its canonical JSON and its words)
// and records the boundary after it.
func (p *promptPrefix) add(canonical []byte, words int64) {
	p.write(canonical)
	p.words += words
	p.points = append(p.points, cacheBreakpoint{key: string(p.h.Sum(nil)), words: p.words})
}

// mark appends a section or role boundary. It starts with NUL, which no
// JSON text does, so it cannot collide with a block.
func (p *promptPrefix) mark(section string) {
	p.write([]byte("\x00" + section))
}

// breakpoint records a checkpoint after everything added so far.
func (p *promptPrefix) breakpoint(ttl time.Duration) {
	p.points = append(p.points, cacheBreakpoint{key: string(p.h.Sum(nil)), words: p.words, explicit: true, ttl: ttl})
	p.checkpoints++
}

// converseCachePoint validates a Converse CachePointBlock at field and
// records its checkpoint.
func (p *promptPrefix) converseCachePoint(cp cachePointBlock, field string) *bedrockError {
	if cp.Type != "default" {
		return validationError("1 validation error detected: Value '%s' at '%s.type' failed to satisfy constraint: Member must satisfy enum value set: [default]", clip(cp.Type), field)
	}
	ttl := defaultCacheTTL
	if cp.TTL != nil {
		var ok bool
		if ttl, ok = parseCacheTTL(*cp.TTL); !ok {
			return validationError("1 validation error detected: Value '%s' at '%s.ttl' failed to satisfy constraint: Member must satisfy enum value set: [5m, 1h]", clip(*cp.TTL), field)
		}
	}
	p.breakpoint(ttl)
	return nil
}

// anthropicCacheControl validates an Anthropic cache_control object at
// path ({"type":"ephemeral","ttl":"5m"|"1h"}) and records its checkpoint.
func (p *promptPrefix) anthropicCacheControl(v any, path string) *bedrockError {
	m, ok := v.(map[string]any)
	if !ok {
		return malformed(path + ": expected type: JSONObject")
	}
	if m["type"] != "ephemeral" {
		return malformed(path + "/type: ephemeral is not the value given")
	}
	ttl := defaultCacheTTL
	if raw, has := m["ttl"]; has {
		s, _ := raw.(string)
		if ttl, ok = parseCacheTTL(s); !ok {
			return malformed(path + "/ttl: must be one of 5m, 1h")
		}
	}
	p.breakpoint(ttl)
	return nil
}

func parseCacheTTL(s string) (time.Duration, bool) {
	switch s {
	case "5m":
		return defaultCacheTTL, true
	case "1h":
		return longCacheTTL, true
	}
	return 0, false
}

// cacheUsage is what the prompt cache did for one request.
type cacheUsage struct {
	// used reports that the request marked at least one checkpoint.
	used bool
	// read and write are the input tokens read from and written to the
	// cache; write1h is the part of write cached for one hour.
	read, write, write1h int64
}

// inputUsage applies the prompt cache to a validated request and returns
// its uncached input tokens and the cache usage. Without checkpoints the
// input is the prompt's words, at least 1. With them, it is the words
// after the last checkpoint (at least 1 if nothing was cached).
func (s *Server) inputUsage(p prompt) (int64, cacheUsage) {
	last := -1
	for i, pt := range p.points {
		if pt.explicit {
			last = i
		}
	}
	if last < 0 {
		return max(p.words, 1), cacheUsage{}
	}
	cu := s.usePromptCache(p.points[:last+1])
	in := p.words - p.points[last].words
	if in == 0 && cu.read == 0 && cu.write == 0 {
		in = 1
	}
	return in, cu
}

// usePromptCache reads the longest cached prefix that ends at a checkpoint
// or at most cacheLookbackBlocks boundaries before one, writes the
// checkpoints after it, and (re)arms the entries. points ends with a
// checkpoint.
func (s *Server) usePromptCache(points []cacheBreakpoint) cacheUsage {
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	hit, window := -1, 0
	for i := len(points) - 1; i >= 0 && hit < 0; i-- {
		switch pt := points[i]; {
		case pt.explicit:
			window = cacheLookbackBlocks
		case window > 0:
			window--
		default:
			continue
		}
		if e, ok := s.promptCache[points[i].key]; ok && now.Before(e.expires) {
			hit = i
		}
	}
	cu := cacheUsage{used: true}
	var prev int64
	if hit >= 0 {
		cu.read = points[hit].words
		prev = cu.read
		e := s.promptCache[points[hit].key]
		e.expires = later(e.expires, now.Add(e.ttl))
		s.promptCache[points[hit].key] = e
	}
	for _, pt := range points[hit+1:] {
		if !pt.explicit {
			continue
		}
		n := pt.words - prev
		prev = pt.words
		cu.write += n
		if pt.ttl == longCacheTTL {
			cu.write1h += n
		}
	}
	if len(s.promptCache) >= promptCacheSweep {
		for k, e := range s.promptCache {
			if !now.Before(e.expires) {
				delete(s.promptCache, k)
			}
		}
	}
	for _, pt := range points {
		if !pt.explicit {
			continue
		}
		e := s.promptCache[pt.key]
		if !now.Before(e.expires) {
			e = cacheEntry{}
		}
		e.expires = later(e.expires, now.Add(pt.ttl))
		e.ttl = max(e.ttl, pt.ttl)
		s.promptCache[pt.key] = e
	}
	return cu
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
