package memnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	gatewayRoleARN = "arn:aws:iam::123456789012:role/GatewayRole"
	invokeRoleARN  = "arn:aws:iam::123456789012:role/BedrockInvocationRole"
)

// get fetches url through tr and returns the body.
func get(t *testing.T, tr http.RoundTripper, url string) string {
	t.Helper()
	client := &http.Client{Transport: tr}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200", url, resp.StatusCode)
	}
	return string(b)
}

// TestFakeTimeAdvancesWhileConnected is the point of the package: with a
// request in flight on a memnet connection, every goroutine is durably
// blocked while the handler sleeps, so fake time jumps 10 minutes.
func TestFakeTimeAdvancesWhileConnected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := Listen()
		stop := Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(10 * time.Minute)
			io.WriteString(w, "slept")
		}))
		defer stop()
		tr := l.Transport()
		defer tr.CloseIdleConnections()

		for _, url := range []string{"http://memnet/", "https://bedrock-runtime.us-east-1.amazonaws.com/"} {
			start := time.Now()
			if got, want := get(t, tr, url), "slept"; got != want {
				t.Errorf("GET %s = %q, want %q", url, got, want)
			}
			if got, want := time.Since(start), 10*time.Minute; got != want {
				t.Errorf("GET %s took %v of fake time, want %v", url, got, want)
			}
		}
	})
}

// TestSTSAssumeRole drives the real SDK STS client against the fake STS,
// both with a BaseEndpoint and with the SDK's default https endpoint.
func TestSTSAssumeRole(t *testing.T) {
	for _, tt := range []struct {
		name     string
		endpoint *string
	}{
		{"BaseEndpoint", aws.String("http://memnet")},
		{"default https endpoint", nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				fake := fakeaws.New(fakeaws.Options{Roles: []string{invokeRoleARN}})
				client, stop := newSTS(fake, tt.endpoint)
				defer stop()

				start := time.Now()
				out, err := client.AssumeRole(t.Context(), &sts.AssumeRoleInput{
					RoleArn:         aws.String(invokeRoleARN),
					RoleSessionName: aws.String("alice@example.com"),
					Tags:            []ststypes.Tag{{Key: aws.String("team"), Value: aws.String("search")}},
				})
				if err != nil {
					t.Fatalf("AssumeRole: %v", err)
				}
				// Nothing in the call waits on a timer, so no goroutine is
				// ever durably blocked with a timer pending: the call takes
				// no fake time at all.
				if got := time.Since(start); got != 0 {
					t.Errorf("AssumeRole took %v of fake time, want 0", got)
				}

				c := out.Credentials
				if c == nil || !strings.HasPrefix(aws.ToString(c.AccessKeyId), "ASIA") || aws.ToString(c.SecretAccessKey) == "" || aws.ToString(c.SessionToken) == "" {
					t.Fatalf("AssumeRole credentials = %+v, want an ASIA key with secret and session token", c)
				}
				if got, want := aws.ToTime(c.Expiration), start.Add(time.Hour); !got.Equal(want) {
					t.Errorf("AssumeRole expiration = %v, want %v", got, want)
				}
				if got, want := aws.ToString(out.AssumedRoleUser.Arn), "arn:aws:sts::123456789012:assumed-role/BedrockInvocationRole/alice@example.com"; got != want {
					t.Errorf("AssumedRoleUser.Arn = %q, want %q", got, want)
				}

				want := []fakeaws.AssumeRoleCall{{
					Time:        start,
					CallerARN:   gatewayRoleARN,
					RoleARN:     invokeRoleARN,
					SessionName: "alice@example.com",
					Tags:        map[string]string{"team": "search"},
					AccessKeyID: aws.ToString(c.AccessKeyId),
				}}
				if diff := cmp.Diff(want, fake.AssumeRoleCalls()); diff != "" {
					t.Errorf("AssumeRoleCalls() mismatch (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// newSTS serves fake's STS on a new Listener and returns an SDK client
// signing with the gateway's root credentials, and a func that closes
// both.
func newSTS(fake *fakeaws.Server, endpoint *string) (*sts.Client, func()) {
	l := Listen()
	stopServer := Serve(l, fake.STSHandler())
	tr := l.Transport()
	root := fake.RootCredentials(gatewayRoleARN)
	client := sts.New(sts.Options{
		Region:       "us-east-1",
		BaseEndpoint: endpoint,
		HTTPClient:   &http.Client{Transport: tr},
		Credentials:  credentials.NewStaticCredentialsProvider(root.AccessKeyID, root.SecretAccessKey, ""),
	})
	return client, func() {
		tr.CloseIdleConnections()
		stopServer()
	}
}

// TestConcurrentAssumeRole fires many concurrent AssumeRole calls through
// one transport and logs the wall-clock throughput.
func TestConcurrentAssumeRole(t *testing.T) {
	const calls = 1000
	wallStart := time.Now() // outside the bubble: the real clock
	synctest.Test(t, func(t *testing.T) {
		fake := fakeaws.New(fakeaws.Options{Roles: []string{invokeRoleARN}})
		client, stop := newSTS(fake, aws.String("http://memnet"))
		defer stop()

		start := time.Now()
		errs := make(chan error, calls)
		var wg sync.WaitGroup
		for i := range calls {
			wg.Go(func() {
				_, err := client.AssumeRole(t.Context(), &sts.AssumeRoleInput{
					RoleArn:         aws.String(invokeRoleARN),
					RoleSessionName: aws.String(fmt.Sprintf("user-%04d", i)),
				})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("AssumeRole: %v", err)
			}
		}
		if got := time.Since(start); got != 0 {
			t.Errorf("%d concurrent AssumeRole calls took %v of fake time, want 0", calls, got)
		}

		seen := make(map[string]bool)
		for _, c := range fake.AssumeRoleCalls() {
			if c.Err != "" {
				t.Errorf("AssumeRole %q: fake recorded error %q, want none", c.SessionName, c.Err)
			}
			seen[c.SessionName] = true
		}
		if got := len(seen); got != calls {
			t.Errorf("fake saw %d distinct session names, want %d", got, calls)
		}
	})
	wall := time.Since(wallStart)
	t.Logf("%d concurrent AssumeRole calls: %v wall clock, %.0f calls/s", calls, wall, calls/wall.Seconds())
}

// TestServeStopCancelsHandler shows stop does not wait for a graceful
// drain: it closes the connection, the handler's context is canceled, and
// stop returns once the handler has.
func TestServeStopCancelsHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := Listen()
		entered := make(chan struct{})
		var returned bool
		stop := Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-r.Context().Done()
			time.Sleep(time.Second) // stop must wait for this too
			returned = true
		}))
		tr := l.Transport()
		defer tr.CloseIdleConnections()

		clientErr := make(chan error, 1)
		go func() {
			resp, err := (&http.Client{Transport: tr}).Get("http://memnet/")
			if err == nil {
				resp.Body.Close()
			}
			clientErr <- err
		}()
		<-entered
		stop()
		if !returned {
			t.Errorf("stop returned before the handler did")
		}
		if err := <-clientErr; err == nil {
			t.Errorf("GET during stop: err = nil, want an error")
		}
		stop() // idempotent
	})
}

func TestListener(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := Listen()
		if got, want := l.Addr().Network(), "memnet"; got != want {
			t.Errorf("Addr().Network() = %q, want %q", got, want)
		}
		if host, _, err := net.SplitHostPort(l.Addr().String()); err != nil || host != "memnet" {
			t.Errorf("SplitHostPort(%q) = %q, %v; want host %q", l.Addr(), host, err, "memnet")
		}

		// A dial waits for Accept; the two ends see each other's address.
		accepted := make(chan net.Conn)
		go func() {
			c, err := l.Accept()
			if err != nil {
				t.Errorf("Accept: %v", err)
			}
			accepted <- c
		}()
		c, err := l.DialContext(t.Context(), "tcp", "anything:443")
		if err != nil {
			t.Fatalf("DialContext: %v", err)
		}
		s := <-accepted
		if got, want := s.RemoteAddr(), c.LocalAddr(); got != want {
			t.Errorf("server RemoteAddr() = %v, want client LocalAddr() %v", got, want)
		}
		if got, want := c.RemoteAddr(), l.Addr(); got != want {
			t.Errorf("client RemoteAddr() = %v, want %v", got, want)
		}
		c.Close()
		s.Close()

		// A dial nobody accepts ends with its context.
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := l.DialContext(ctx, "tcp", "x:80"); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("DialContext with nobody accepting = %v, want %v", err, context.DeadlineExceeded)
		}

		// Close ends a blocked Accept and later dials.
		acceptErr := make(chan error)
		go func() {
			_, err := l.Accept()
			acceptErr <- err
		}()
		synctest.Wait()
		if err := l.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		if err := <-acceptErr; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want %v", err, net.ErrClosed)
		}
		if _, err := l.DialContext(t.Context(), "tcp", "x:80"); !errors.Is(err, net.ErrClosed) {
			t.Errorf("DialContext after Close = %v, want %v", err, net.ErrClosed)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second Close() = %v, want nil", err)
		}
	})
}

func TestConnReadWriteClose(t *testing.T) {
	for _, tt := range []struct {
		name   string
		finish func(c, s *conn) // what the client end does after writing
		// wantRead is the server's error once it has read "hello".
		wantRead error
		// wantWrite is the server's error writing back.
		wantWrite error
	}{
		{"Close", func(c, s *conn) { c.Close() }, io.EOF, io.ErrClosedPipe},
		{"CloseWrite", func(c, s *conn) { c.CloseWrite() }, io.EOF, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, s := newPipe(Addr{"client", 1}, Addr{"server", 2})
			defer s.Close()
			if n, err := c.Write([]byte("hello")); n != 5 || err != nil {
				t.Fatalf("Write = %d, %v; want 5, nil", n, err)
			}
			tt.finish(c, s)
			// What was written before the close is still delivered.
			b, err := io.ReadAll(s)
			if got, want := string(b), "hello"; got != want || err != nil {
				t.Errorf("ReadAll(server) = %q, %v; want %q, nil", got, err, want)
			}
			if _, err := s.Read(make([]byte, 1)); err != tt.wantRead {
				t.Errorf("server Read after EOF = %v, want %v", err, tt.wantRead)
			}
			if _, err := s.Write([]byte("x")); !errors.Is(err, tt.wantWrite) {
				t.Errorf("server Write = %v, want %v", err, tt.wantWrite)
			}
		})
	}

	c, _ := newPipe(Addr{"client", 1}, Addr{"server", 2})
	c.Close()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read on closed conn = %v, want %v", err, net.ErrClosed)
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write on closed conn = %v, want %v", err, net.ErrClosed)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want %v", err, net.ErrClosed)
	}
	if err := c.SetDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("SetDeadline on closed conn = %v, want %v", err, net.ErrClosed)
	}
}

// TestConnBackpressure: a Write larger than the buffer blocks (durably)
// until the peer reads.
func TestConnBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, s := newPipe(Addr{"client", 1}, Addr{"server", 2})
		defer c.Close()
		defer s.Close()
		data := []byte(strings.Repeat("x", 3*bufferSize+7))
		written := make(chan int)
		go func() {
			n, err := c.Write(data)
			if err != nil {
				t.Errorf("Write: %v", err)
			}
			written <- n
		}()
		synctest.Wait()
		select {
		case n := <-written:
			t.Fatalf("Write of %d bytes returned %d before anything was read, want it to block", len(data), n)
		default:
		}
		got, err := io.ReadFull(s, make([]byte, len(data)))
		if got != len(data) || err != nil {
			t.Errorf("ReadFull = %d, %v; want %d, nil", got, err, len(data))
		}
		if n := <-written; n != len(data) {
			t.Errorf("Write = %d, want %d", n, len(data))
		}
	})
}

func TestConnDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, s := newPipe(Addr{"client", 1}, Addr{"server", 2})
		defer c.Close()
		defer s.Close()

		// A future read deadline fires on the bubble's clock.
		start := time.Now()
		s.SetReadDeadline(start.Add(time.Minute))
		_, err := s.Read(make([]byte, 1))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Read past deadline = %v, want %v", err, os.ErrDeadlineExceeded)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("Read past deadline = %v, want a net.Error with Timeout()", err)
		}
		if got, want := time.Since(start), time.Minute; got != want {
			t.Errorf("read deadline fired after %v, want %v", got, want)
		}

		// Clearing the deadline makes Read block again; a deadline in
		// the past wakes it (net/http aborts its background read so).
		s.SetReadDeadline(time.Time{})
		readErr := make(chan error)
		go func() {
			_, err := s.Read(make([]byte, 1))
			readErr <- err
		}()
		synctest.Wait()
		s.SetReadDeadline(time.Unix(1, 0))
		if err := <-readErr; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Read after deadline moved to the past = %v, want %v", err, os.ErrDeadlineExceeded)
		}

		// A replaced deadline does not fire.
		s.SetReadDeadline(time.Now().Add(time.Second))
		s.SetReadDeadline(time.Now().Add(time.Hour))
		go c.Write([]byte("x"))
		if _, err := s.Read(make([]byte, 1)); err != nil {
			t.Errorf("Read before the replaced deadline = %v, want nil", err)
		}
		time.Sleep(2 * time.Second)
		go func() {
			time.Sleep(time.Minute)
			c.Write([]byte("y"))
		}()
		if _, err := s.Read(make([]byte, 1)); err != nil {
			t.Errorf("Read after a replaced deadline's time = %v, want nil", err)
		}

		// Write deadlines cover a Write blocked on a full buffer.
		start = time.Now()
		s.SetWriteDeadline(start.Add(time.Second))
		n, err := s.Write(make([]byte, bufferSize+1))
		if n != bufferSize || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Write past deadline = %d, %v; want %d, %v", n, err, bufferSize, os.ErrDeadlineExceeded)
		}
		if got, want := time.Since(start), time.Second; got != want {
			t.Errorf("write deadline fired after %v, want %v", got, want)
		}
	})
}

// TestConnConcurrentWrites: Writes blocked on a full buffer, one of them
// waiting for the other to finish, are durably blocked (time advances
// past them; with net.Pipe the waiting one is in sync.Mutex.Lock, which is
// not durable, and the bubble hangs), and their data does not interleave.
func TestConnConcurrentWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, s := newPipe(Addr{"client", 1}, Addr{"server", 2})
		defer s.Close()
		const size = 3 * bufferSize
		a, b := strings.Repeat("a", size), strings.Repeat("b", size)
		for _, data := range []string{a, b} {
			go func() {
				if _, err := io.WriteString(c, data); err != nil {
					t.Errorf("Write: %v", err)
				}
			}()
		}
		start := time.Now()
		time.Sleep(time.Second)
		if got, want := time.Since(start), time.Second; got != want {
			t.Errorf("Sleep(1s) with writers blocked took %v of fake time, want %v", got, want)
		}
		got := make([]byte, 2*size)
		if _, err := io.ReadFull(s, got); err != nil {
			t.Fatalf("ReadFull: %v", err)
		}
		if g := string(got); g != a+b && g != b+a {
			t.Errorf("concurrent Writes interleaved: got %d bytes starting %q, want one Write's data after the other's", len(g), g[:8])
		}
		c.Close()
	})
}
