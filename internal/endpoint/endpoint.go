// Package endpoint holds the one rule for URLs the gateway sends secrets
// or prompts to (AWS endpoints, identity providers): https, or plain http
// only to a loopback host (local emulators and tests), so that signed
// requests never cross a network in clear text.
package endpoint

import (
	"errors"
	"fmt"
	"net"
	"net/url"
)

// Check accepts an absolute https URL, or an http URL whose host is
// loopback. It refuses user info, a query and a fragment: an endpoint is
// scheme://host[:port][/path].
func Check(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q must be scheme://host[:port][/path]", raw)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !IsLoopback(u.Hostname()) {
			return fmt.Errorf("%q: plain http is allowed only to a loopback host", raw)
		}
	default:
		return errors.New("scheme must be https")
	}
	return nil
}

// IsLoopback reports whether host (a name or an IP literal, without port
// or brackets) is "localhost" or a loopback address (127.0.0.0/8, ::1).
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
