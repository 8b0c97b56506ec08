// Package pricing knows what Bedrock charges: a dated catalogue of
// on-demand prices per model and Region, the usage-type names the CUR 2.0
// bill uses for them, and exact arithmetic to turn token counts into
// dollars.
package pricing

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/bits"
	"strconv"
)

// Money is an exact amount of US dollars, counted in picodollars
// (1e-12 USD). Bedrock's prices are quoted per million (or thousand)
// tokens with up to six decimals, so the price of one token is a whole
// number of picodollars and the cost of any request is exact: there is no
// float to drift over millions of requests. An int64 holds up to about
// $9.2 million, far more than one request or one budget period costs;
// sums that could exceed it (reports over many months) use Total.
type Money int64

// Dollar is one US dollar.
const Dollar Money = 1_000_000_000_000

// picoDigits is the number of decimal places Money keeps.
const picoDigits = 12

var (
	errMoneySyntax   = errors.New("not a decimal number of dollars")
	errMoneyPrecise  = errors.New("more than 12 decimal places")
	errMoneyOverflow = errors.New("amount too large")
)

// ParseMoney reads a decimal amount of dollars such as "3", "0.0693" or
// "-1.25": an optional minus sign, digits, and an optional fraction of at
// most 12 digits. Exponents, "$", spaces and thousands separators are
// refused, so a typo in a configured price is an error, not a price.
func ParseMoney(s string) (Money, error) {
	m, err := parseMoney(s)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	return m, nil
}

func parseMoney(s string) (Money, error) {
	neg := false
	if len(s) > 0 && s[0] == '-' {
		neg, s = true, s[1:]
	}
	if s == "" {
		return 0, errMoneySyntax
	}
	var v uint64
	digits, frac, point := 0, 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.' && !point:
			point = true
			continue
		case c < '0' || c > '9':
			return 0, errMoneySyntax
		}
		if point {
			frac++
			if frac > picoDigits {
				return 0, errMoneyPrecise
			}
		}
		digits++
		hi, lo := bits.Mul64(v, 10)
		lo, carry := bits.Add64(lo, uint64(c-'0'), 0)
		if hi != 0 || carry != 0 {
			return 0, errMoneyOverflow
		}
		v = lo
	}
	if digits == 0 || (point && frac == 0) {
		return 0, errMoneySyntax
	}
	for ; frac < picoDigits; frac++ {
		hi, lo := bits.Mul64(v, 10)
		if hi != 0 {
			return 0, errMoneyOverflow
		}
		v = lo
	}
	if v > math.MaxInt64 {
		return 0, errMoneyOverflow
	}
	if neg {
		return -Money(v), nil
	}
	return Money(v), nil
}

// String writes m as a decimal number of dollars with no trailing zeros:
// "0.0693", "3", "-0.000000000001".
func (m Money) String() string { return string(m.Append(nil)) }

// Append appends m as String writes it.
func (m Money) Append(dst []byte) []byte {
	u := uint64(m)
	if m < 0 {
		dst = append(dst, '-')
		u = uint64(-m) // MinInt64 too: its two's complement is its magnitude
	}
	whole, frac := u/uint64(Dollar), u%uint64(Dollar)
	dst = strconv.AppendUint(dst, whole, 10)
	if frac == 0 {
		return dst
	}
	var buf [picoDigits]byte
	for i := picoDigits - 1; i >= 0; i-- {
		buf[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := picoDigits
	for buf[n-1] == '0' {
		n--
	}
	dst = append(dst, '.')
	return append(dst, buf[:n]...)
}

// MarshalJSON writes m as a JSON number, exactly (never in exponent form).
func (m Money) MarshalJSON() ([]byte, error) { return m.Append(nil), nil }

// UnmarshalJSON reads a JSON number written by MarshalJSON (or a plain
// decimal one); exponents are refused rather than rounded. JSON null
// leaves m as it is, as encoding/json's own types do.
func (m *Money) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v, err := ParseMoney(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Float64 is m in dollars as a float, for Prometheus counters, which are
// floats anyway; everything that must add up uses Money.
func (m Money) Float64() float64 {
	whole, frac := m/Dollar, m%Dollar
	return float64(whole) + float64(frac)/float64(Dollar)
}

// Add returns m+n, and false if the sum does not fit.
func (m Money) Add(n Money) (Money, bool) {
	s := m + n
	if (s > m) != (n > 0) {
		return m, false
	}
	return s, true
}

// Times returns m×n, and false if the product does not fit.
func (m Money) Times(n int64) (Money, bool) {
	if m == 0 || n == 0 {
		return 0, true
	}
	p := m * Money(n)
	if p/Money(n) != m || (m == -1 && n == math.MinInt64) || (n == -1 && m == math.MinInt64) {
		return 0, false
	}
	return p, true
}

// Total is a sum of Money that cannot overflow, for reports and
// reconciliations over any number of requests. The zero Total is $0.
type Total struct{ v big.Int }

// Add adds m to t.
func (t *Total) Add(m Money) { t.v.Add(&t.v, big.NewInt(int64(m))) }

// AddTotal adds u to t.
func (t *Total) AddTotal(u *Total) { t.v.Add(&t.v, &u.v) }

// Cmp compares t and u: -1 if t < u, 0 if equal, +1 if t > u.
func (t *Total) Cmp(u *Total) int { return t.v.Cmp(&u.v) }

// Sub returns t−u.
func (t *Total) Sub(u *Total) Total {
	var d Total
	d.v.Sub(&t.v, &u.v)
	return d
}

// Abs returns |t|.
func (t *Total) Abs() Total {
	var a Total
	a.v.Abs(&t.v)
	return a
}

// Money returns t as Money, and false if it does not fit.
func (t *Total) Money() (Money, bool) {
	if !t.v.IsInt64() {
		return 0, false
	}
	return Money(t.v.Int64()), true
}

// String writes t in dollars as Money.String does.
func (t *Total) String() string {
	if m, ok := t.Money(); ok {
		return m.String()
	}
	var q, r big.Int
	q.QuoRem(&t.v, big.NewInt(int64(Dollar)), &r)
	s := q.String()
	if q.Sign() == 0 && t.v.Sign() < 0 {
		s = "-0"
	}
	frac := Money(new(big.Int).Abs(&r).Int64()).String() // "0.xxx" or "0"
	if frac == "0" {
		return s
	}
	return s + frac[1:]
}

// MarshalJSON writes t as an exact JSON number.
func (t *Total) MarshalJSON() ([]byte, error) { return []byte(t.String()), nil }

// Float64 is t in dollars as a float.
func (t *Total) Float64() float64 {
	f, _ := new(big.Rat).SetFrac(&t.v, big.NewInt(int64(Dollar))).Float64()
	return f
}
