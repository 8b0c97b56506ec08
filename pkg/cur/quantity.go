package cur

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"

	"github.com/bedrock-gateway/gateway/pkg/pricing"
)

// Quantity is an exact decimal amount of usage with up to 12 decimal
// places: tokens are whole numbers, but the units of other usage types
// (GB-months, hours) are not, and a float would drift when millions of
// lines are summed. Its zero value is 0. A Quantity is immutable: every
// method returns a new one.
//
// CUR writes line_item_usage_amount and line_item_unblended_cost as
// doubles. The reader turns a double into the shortest decimal that reads
// back as the same double (strconv.FormatFloat(f, 'f', -1, 64)), so the
// 0.0693 AWS meant stays 0.0693 rather than
// 0.06929999999999999549..., and rounds that decimal half to even to 12
// places, the picodollar resolution of pricing.Money. A CSV value is
// taken as the decimal it spells, rounded the same way.
type Quantity struct{ pico big.Int }

// quantityPlaces is the number of decimal places a Quantity keeps, the
// same as pricing.Money so that costs and amounts round alike.
const quantityPlaces = 12

var picoPerUnit = big.NewInt(1_000_000_000_000)

// QuantityOf returns n units, such as n tokens.
func QuantityOf(n int64) Quantity {
	var q Quantity
	q.pico.Mul(big.NewInt(n), picoPerUnit)
	return q
}

// ParseQuantity reads a plain decimal number such as "1200", "0.5" or
// "-3.25" with at most 12 decimal places. Exponents are refused, so that
// a typo is an error rather than a very large number.
func ParseQuantity(s string) (Quantity, error) {
	if !isPlainDecimal(s) {
		return Quantity{}, fmt.Errorf("quantity %q: not a plain decimal number", s)
	}
	if frac := fractionDigits(s); frac > quantityPlaces {
		return Quantity{}, fmt.Errorf("quantity %q: more than %d decimal places", s, quantityPlaces)
	}
	p, err := decimalToPico(s)
	if err != nil {
		return Quantity{}, fmt.Errorf("quantity %q: %w", s, err)
	}
	return Quantity{pico: *p}, nil
}

// String writes q as a plain decimal without trailing zeros: "1200",
// "0.5", "-3.25".
func (q Quantity) String() string {
	var abs, whole, frac big.Int
	abs.Abs(&q.pico)
	whole.QuoRem(&abs, picoPerUnit, &frac)
	s := whole.String()
	if q.pico.Sign() < 0 {
		s = "-" + s
	}
	if frac.Sign() == 0 {
		return s
	}
	f := fmt.Sprintf("%012s", frac.String())
	for f[len(f)-1] == '0' {
		f = f[:len(f)-1]
	}
	return s + "." + f
}

// MarshalJSON writes q as an exact JSON number (never in exponent form).
func (q Quantity) MarshalJSON() ([]byte, error) { return []byte(q.String()), nil }

// Equal reports whether q and r are the same amount. (go-cmp uses it.)
func (q Quantity) Equal(r Quantity) bool { return q.pico.Cmp(&r.pico) == 0 }

// Cmp compares q and r: -1 if q < r, 0 if equal, +1 if q > r.
func (q Quantity) Cmp(r Quantity) int { return q.pico.Cmp(&r.pico) }

// Sign returns -1, 0 or +1 as q is negative, zero or positive.
func (q Quantity) Sign() int { return q.pico.Sign() }

// Add returns q+r.
func (q Quantity) Add(r Quantity) Quantity {
	var s Quantity
	s.pico.Add(&q.pico, &r.pico)
	return s
}

// Sub returns q−r.
func (q Quantity) Sub(r Quantity) Quantity {
	var d Quantity
	d.pico.Sub(&q.pico, &r.pico)
	return d
}

// Abs returns |q|.
func (q Quantity) Abs() Quantity {
	var a Quantity
	a.pico.Abs(&q.pico)
	return a
}

// Int64 returns q as a whole number, and false if q has a fraction or
// does not fit in an int64.
func (q Quantity) Int64() (int64, bool) {
	var whole, frac big.Int
	whole.QuoRem(&q.pico, picoPerUnit, &frac)
	if frac.Sign() != 0 || !whole.IsInt64() {
		return 0, false
	}
	return whole.Int64(), true
}

// Rat returns q as an exact fraction.
func (q Quantity) Rat() *big.Rat { return new(big.Rat).SetFrac(&q.pico, picoPerUnit) }

// maxExponent bounds the exponent accepted in a number read from a CSV
// file. A double never needs more than ±324; refusing more keeps a hostile
// "1e999999999" from turning into a billion-digit integer.
const maxExponent = 400

// maxNumberLen bounds the length of a number read from a CSV file; a
// double needs fewer than 30 characters in exponent form and at most
// about 330 in plain form.
const maxNumberLen = 400

var (
	errNotNumber  = errors.New("not a decimal number")
	errNotFinite  = errors.New("not a finite number")
	errTooLarge   = errors.New("amount too large")
	errBigExpo    = fmt.Errorf("exponent beyond ±%d", maxExponent)
	errMoneyRange = errors.New("does not fit in pricing.Money (about ±$9.2 million)")
)

// quantityFromFloat converts a double as the Quantity doc describes.
func quantityFromFloat(f float64) (Quantity, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return Quantity{}, errNotFinite
	}
	p, err := decimalToPico(strconv.FormatFloat(f, 'f', -1, 64))
	if err != nil {
		return Quantity{}, err
	}
	return Quantity{pico: *p}, nil
}

// quantityFromText reads a number as CUR's CSV writes it: a decimal,
// possibly with an exponent ("1.5E-4"), rounded to 12 places. The empty
// string is refused; the caller decides what an empty cell means.
func quantityFromText(s string) (Quantity, error) {
	if len(s) > maxNumberLen || !isNumber(s) {
		return Quantity{}, errNotNumber
	}
	p, err := decimalToPico(s)
	if err != nil {
		return Quantity{}, err
	}
	return Quantity{pico: *p}, nil
}

// money converts q to pricing.Money, which counts the same picodollars.
func (q Quantity) money() (pricing.Money, error) {
	if !q.pico.IsInt64() {
		return 0, errMoneyRange
	}
	return pricing.Money(q.pico.Int64()), nil
}

// decimalToPico rounds the number s (already checked by isNumber) half to
// even to a whole number of 1e-12 units.
func decimalToPico(s string) (*big.Int, error) {
	if exp := exponentOf(s); exp > maxExponent || exp < -maxExponent {
		return nil, errBigExpo
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, errNotNumber
	}
	num := new(big.Int).Mul(r.Num(), picoPerUnit)
	den := r.Denom()
	q, m := new(big.Int).QuoRem(num, den, new(big.Int))
	// Round half to even: compare 2|m| with den.
	m.Abs(m).Lsh(m, 1)
	if c := m.Cmp(den); c > 0 || (c == 0 && q.Bit(0) == 1) {
		if num.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	// 1e30 picounits is 1e18 units: beyond any usage amount or cost, and
	// a sign that the input is garbage rather than a bill.
	if q.CmpAbs(maxPico) > 0 {
		return nil, errTooLarge
	}
	return q, nil
}

var maxPico = new(big.Int).Exp(big.NewInt(10), big.NewInt(30), nil)

// isPlainDecimal reports whether s is [-+]digits[.digits] with at least
// one digit and no exponent.
func isPlainDecimal(s string) bool {
	_, rest := splitSign(s)
	mant, exp := splitExponent(rest)
	return exp == "" && isMantissa(mant)
}

// isNumber reports whether s is a plain decimal, optionally followed by
// an exponent e[-+]digits.
func isNumber(s string) bool {
	_, rest := splitSign(s)
	mant, exp := splitExponent(rest)
	if !isMantissa(mant) {
		return false
	}
	if exp == "" {
		return true
	}
	_, digits := splitSign(exp[1:])
	return digits != "" && allDigits(digits)
}

func splitSign(s string) (sign, rest string) {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		return s[:1], s[1:]
	}
	return "", s
}

func splitExponent(s string) (mant, exp string) {
	for i := 0; i < len(s); i++ {
		if s[i] == 'e' || s[i] == 'E' {
			return s[:i], s[i:]
		}
	}
	return s, ""
}

func isMantissa(s string) bool {
	whole, frac, point := s, "", false
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			whole, frac, point = s[:i], s[i+1:], true
			break
		}
	}
	if (whole == "" && frac == "") || (point && frac == "") {
		return false
	}
	return allDigits(whole) && allDigits(frac)
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func fractionDigits(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return len(s) - i - 1
		}
	}
	return 0
}

// exponentOf returns the decimal exponent s would have in scientific
// notation, roughly: the explicit exponent plus the number of integer
// digits. It only needs to be good enough to refuse absurd inputs.
func exponentOf(s string) int {
	_, rest := splitSign(s)
	mant, exp := splitExponent(rest)
	e := 0
	if exp != "" {
		sign, digits := splitSign(exp[1:])
		if len(digits) > 6 {
			return math.MaxInt32
		}
		e, _ = strconv.Atoi(digits)
		if sign == "-" {
			e = -e
		}
	}
	whole := mant
	for i := 0; i < len(mant); i++ {
		if mant[i] == '.' {
			whole = mant[:i]
			break
		}
	}
	if len(whole) > maxExponent {
		return math.MaxInt32
	}
	return e + len(whole)
}
