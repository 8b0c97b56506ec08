package sigv4

import (
	"crypto/sha256"
	"sync"
)

// blockSize is SHA-256's block size, the width of the HMAC pads.
const blockSize = 64

var zeroBlock [blockSize]byte

func sha256Sum(b []byte) [sha256.Size]byte { return sha256.Sum256(b) }

// hmacPadded returns HMAC-SHA256(key, buf[blockSize:]), for a key of at
// most blockSize bytes. buf[:blockSize] is room the caller left for the
// inner pad, overwritten here, so that the inner hash is one Sum256 over
// one contiguous buffer with no copy of the message; the outer hash runs
// over a stack array. That is RFC 2104 without hmac.New's two heap hash
// states and its Sum(nil) slice.
func hmacPadded(key []byte, buf []byte) [sha256.Size]byte {
	var outer [blockSize + sha256.Size]byte
	copy(outer[:blockSize], key)
	for i := range blockSize {
		buf[i] = outer[i] ^ 0x36
		outer[i] ^= 0x5c
	}
	inner := sha256.Sum256(buf)
	copy(outer[blockSize:], inner[:])
	return sha256.Sum256(outer[:])
}

// deriveKey returns the SigV4 signing key,
// HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request"),
// working in st.tmp, which it leaves zeroed (it held the secret).
func (st *state) deriveKey(secret string, date []byte, region, service string) [sha256.Size]byte {
	var kSecret [blockSize]byte
	n := len("AWS4") + len(secret)
	if n > blockSize {
		// HMAC hashes a key longer than a block (a secret of more than 60
		// bytes; AWS's are 40).
		t := append(append(st.tmp[:0], "AWS4"...), secret...)
		sum := sha256.Sum256(t)
		clear(t)
		st.tmp = t
		n = copy(kSecret[:], sum[:])
	} else {
		copy(kSecret[copy(kSecret[:], "AWS4"):], secret)
	}
	t := append(st.tmp[:0], zeroBlock[:]...)
	t = append(t, date...)
	k := hmacPadded(kSecret[:n], t)
	clear(kSecret[:])
	t = append(t[:blockSize], region...)
	k = hmacPadded(k[:], t)
	t = append(t[:blockSize], service...)
	k = hmacPadded(k[:], t)
	t = append(t[:blockSize], "aws4_request"...)
	k = hmacPadded(k[:], t)
	clear(t[:blockSize]) // the last inner pad, derived from the service key
	st.tmp = t
	return k
}

// maxCachedKeys bounds the key cache: a signing key is valid for one UTC
// day, so this is how many caller sessions (times regions) sign without
// the four key-deriving HMACs each request. It is a ceiling on memory,
// about 200 bytes an entry plus the strings, not a working-set estimate.
const maxCachedKeys = 1024

// cacheKey identifies a derived key by everything that goes into it. The
// SDK's cache is keyed by region and service and checks only the access key
// ID and the day, so a new secret under an old key ID would get the old key;
// keying by the secret too makes that impossible here.
type cacheKey struct {
	accessKeyID, secret, region, service string
	date                                 [8]byte
}

// keyCache remembers derived signing keys, bounded in size: when full, it
// drops an entry at random (map iteration order) to make room, which is
// enough for a cache whose entries all expire within a day.
type keyCache struct {
	mu  sync.RWMutex
	max int
	m   map[cacheKey][sha256.Size]byte
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, m: make(map[cacheKey][sha256.Size]byte)}
}

// get returns the signing key for the arguments, deriving and remembering
// it on a miss. A date that is not eight bytes (a year before 0 or after
// 9999) is derived every time rather than given a cache key.
func (c *keyCache) get(st *state, accessKeyID, secret string, date []byte, region, service string) [sha256.Size]byte {
	if len(date) != 8 {
		return st.deriveKey(secret, date, region, service)
	}
	ck := cacheKey{accessKeyID: accessKeyID, secret: secret, region: region, service: service, date: [8]byte(date)}
	c.mu.RLock()
	k, ok := c.m[ck]
	c.mu.RUnlock()
	if ok {
		return k
	}
	k = st.deriveKey(secret, date, region, service)
	c.mu.Lock()
	if _, ok := c.m[ck]; !ok {
		if len(c.m) >= c.max {
			for old := range c.m {
				delete(c.m, old)
				break
			}
		}
		c.m[ck] = k
	}
	c.mu.Unlock()
	return k
}

// len reports the number of cached keys (for tests).
func (c *keyCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.m)
}
