package memnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/bedrock-gateway/gateway/internal/fakeaws"
)

func envInt(k string, d int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return d
}

func TestExp(t *testing.T) {
	calls := envInt("CALLS", 1000)
	workers := envInt("WORKERS", 0)
	idle := envInt("IDLE", 1024)
	maxConns := envInt("MAXCONNS", 0)
	usePipe := os.Getenv("PIPE") != ""
	bubble := os.Getenv("NOBUBBLE") == ""
	wallStart := time.Now()
	body := func(t *testing.T) {
		fake := fakeaws.New(fakeaws.Options{Roles: []string{invokeRoleARN}})
		l := Listen()
		stopServer := Serve(l, fake.STSHandler())
		tr := l.Transport()
		tr.MaxIdleConnsPerHost = idle
		tr.MaxConnsPerHost = maxConns
		if usePipe {
			dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, s := net.Pipe()
				select {
				case l.conns <- s:
					return c, nil
				case <-l.done:
					return nil, net.ErrClosed
				}
			}
			tr.DialContext = dial
		}
		root := fake.RootCredentials(gatewayRoleARN)
		client := sts.New(sts.Options{
			Region:       "us-east-1",
			BaseEndpoint: aws.String("http://memnet"),
			HTTPClient:   &http.Client{Transport: tr},
			Credentials:  credentials.NewStaticCredentialsProvider(root.AccessKeyID, root.SecretAccessKey, ""),
		})
		defer stopServer()
		defer tr.CloseIdleConnections()
		var dials int
		var mu sync.Mutex
		od := tr.DialContext
		tr.DialContext = func(ctx context.Context, n, a string) (net.Conn, error) {
			mu.Lock()
			dials++
			mu.Unlock()
			return od(ctx, n, a)
		}
		var sem chan struct{}
		if workers > 0 {
			sem = make(chan struct{}, workers)
		}
		var wg sync.WaitGroup
		var nerr int
		for i := range calls {
			wg.Go(func() {
				if sem != nil {
					sem <- struct{}{}
					defer func() { <-sem }()
				}
				_, err := client.AssumeRole(context.Background(), &sts.AssumeRoleInput{
					RoleArn:         aws.String(invokeRoleARN),
					RoleSessionName: aws.String(fmt.Sprintf("user-%05d", i)),
				})
				if err != nil {
					mu.Lock()
					if nerr == 0 {
						t.Errorf("AssumeRole: %v", err)
					}
					nerr++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		t.Logf("dials=%d errors=%d recorded=%d", dials, nerr, len(fake.AssumeRoleCalls()))
	}
	if bubble {
		synctest.Test(t, body)
	} else {
		body(t)
	}
	wall := time.Since(wallStart)
	t.Logf("calls=%d workers=%d idle=%d maxconns=%d pipe=%v bubble=%v: %v, %.0f calls/s", calls, workers, idle, maxConns, usePipe, bubble, wall, float64(calls)/wall.Seconds())
}
