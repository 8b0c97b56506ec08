// Package memnet is an in-memory network for wire-level tests: real
// aws-sdk-go-v2 clients and the gateway speak real HTTP/1.1 to
// internal/fakeaws (or to each other) without sockets, so the tests can
// run inside a testing/synctest bubble.
//
// In a bubble, fake time advances only when every goroutine is durably
// blocked. A goroutine blocked on a real socket is not, so a test that
// uses httptest.Server in a bubble never sees time move (and
// synctest.Test deadlocks at the end instead of reporting a leak). A
// memnet connection waits only on a sync.Cond and its deadlines are
// time.AfterFunc timers, so a goroutine reading an idle memnet connection
// is durably blocked and, for example, a handler's time.Sleep(10 *
// time.Minute) returns at once in real time.
//
// A test serves a handler on a Listener with Serve and points clients at
// it with Listener.Transport:
//
//	synctest.Test(t, func(t *testing.T) {
//		l := memnet.Listen()
//		stop := memnet.Serve(l, fake.STSHandler())
//		defer stop()
//		tr := l.Transport()
//		defer tr.CloseIdleConnections()
//		client := sts.New(sts.Options{..., HTTPClient: &http.Client{Transport: tr}})
//		...
//	})
//
// Everything also works outside a bubble, on the real clock.
package memnet

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// listenerSeq numbers listeners so that their addresses differ.
var listenerSeq atomic.Int64

// Listener is an in-memory net.Listener. Connections are made with
// DialContext (directly or through Transport); Accept returns their
// server ends. It is safe for concurrent use.
type Listener struct {
	addr    Addr
	conns   chan net.Conn // unbuffered: Dial hands over to Accept
	done    chan struct{} // closed by Close
	once    sync.Once
	dialSeq atomic.Int64
}

var _ net.Listener = (*Listener)(nil)

// Listen returns a new Listener whose address is "memnet:N".
func Listen() *Listener {
	return &Listener{
		addr:  Addr{Host: "memnet", Port: int(listenerSeq.Add(1))},
		conns: make(chan net.Conn),
		done:  make(chan struct{}),
	}
}

// Accept waits for the next connection. After Close it returns an error
// that matches net.ErrClosed, which is what http.Server.Serve expects.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, &net.OpError{Op: "accept", Net: "memnet", Addr: l.addr, Err: net.ErrClosed}
	}
}

// Close stops Accept and makes later dials fail. Connections already
// accepted are not affected. Close is idempotent.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the listener's address, "memnet:N".
func (l *Listener) Addr() net.Addr { return l.addr }

// DialContext connects to l, whatever network and address name: a test
// routes every host a client knows to one fake. It blocks until Accept
// takes the connection, ctx is done, or l is closed. The client end's
// address is "memnet-client:N".
func (l *Listener) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: "memnet", Addr: l.addr, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return nil, opErr(err)
	}
	client := Addr{Host: "memnet-client", Port: int(l.dialSeq.Add(1))}
	c, s := newPipe(client, l.addr)
	select {
	case l.conns <- s:
		return c, nil
	case <-l.done:
		return nil, opErr(net.ErrClosed)
	case <-ctx.Done():
		return nil, opErr(ctx.Err())
	}
}

// Transport returns a new *http.Transport that dials every request to l,
// whatever host and scheme the URL names, so SDK clients can keep their
// default https endpoints: for https URLs no TLS happens and HTTP/1.1 is
// spoken in the clear (the handler sees r.TLS == nil). Keep-alives are on
// and there is no proxy.
//
// MaxConnsPerHost is left unlimited, because a cap deadlocks a test that
// holds more requests in flight than the cap (in a bubble, synctest.Test
// panics with "deadlock" unless a timeout fires first). A test that fires thousands of concurrent calls at once runs
// about twice as fast with tr.MaxConnsPerHost = 16: unlimited, the
// transport dials a connection for nearly every queued request and closes
// most of them again.
//
// Tests call CloseIdleConnections when done; stopping the server with the
// func Serve returned also closes the connections from the server side.
func (l *Listener) Transport() *http.Transport {
	return &http.Transport{
		Proxy:          nil,
		DialContext:    l.DialContext,
		DialTLSContext: l.DialContext,
		// With the default of 2 idle connections per host, a burst of
		// N concurrent calls closes nearly all of its N connections and
		// the next burst dials again (each connection costs three
		// goroutines). 1024 keeps a burst's connections for reuse.
		MaxIdleConns:        0, // no total limit; per host is the limit
		MaxIdleConnsPerHost: 1024,
		// As http.DefaultTransport. In a bubble this runs on fake time:
		// a test that sleeps past it sees idle connections closed, as
		// production would.
		IdleConnTimeout: 90 * time.Second,
	}
}

// Serve serves h on l with an http.Server in a new goroutine. The stop
// func it returns closes the server (the listener and every connection,
// idle or active: see http.Server.Close) and waits until the serve loop
// and every connection's goroutine have finished, so that nothing is left
// running when synctest.Test or goleak checks. A handler still running
// when stop is called sees its request context canceled; stop waits for
// it to return. stop is safe to call more than once.
func Serve(l *Listener, h http.Handler) (stop func()) {
	var conns sync.WaitGroup
	srv := &http.Server{
		Handler: h,
		// Called in the Serve goroutine before the connection's
		// goroutine starts (StateNew), and as that goroutine's last act
		// (StateClosed) or when a handler takes the connection over
		// (StateHijacked).
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				conns.Done()
			}
		},
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(l) // always http.ErrServerClosed: Accept fails only after Close
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			srv.Close()
			<-served // no StateNew after this
			conns.Wait()
		})
	}
}
