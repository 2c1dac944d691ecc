// Command delayproxy forwards TCP connections to one address and delays
// every byte by a fixed one-way latency in each direction, so that a
// loopback server answers as if it were DELAY away: each request and its
// answer take one round trip (2 × DELAY) more, and a new connection one
// more for its handshake (bench/verify-bench.sh DELAY=..., issue 14: a
// verify against a remote registry and ledger, where round trips, not CPU,
// are the cost). Bytes are forwarded in the order they came, each chunk
// released DELAY after it was read, so bandwidth is not limited.
//
//	delayproxy -listen 127.0.0.1:P -to 127.0.0.1:Q -delay 5ms
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (loopback)")
	to := flag.String("to", "", "address to forward to")
	delay := flag.Duration("delay", 5*time.Millisecond, "one-way latency added in each direction")
	flag.Parse()
	if *to == "" || *delay < 0 {
		fmt.Fprintln(os.Stderr, "usage: delayproxy -listen ADDR -to ADDR -delay D")
		os.Exit(2)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "delayproxy:", err)
		os.Exit(1)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "delayproxy: accept:", err)
			os.Exit(1)
		}
		go serve(c, *to, *delay)
	}
}

// serve forwards c to addr. The upstream connection is dialled after one
// round trip, the handshake a remote server would cost.
func serve(c net.Conn, addr string, delay time.Duration) {
	defer c.Close()
	time.Sleep(2 * delay)
	u, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { pipe(u, c, delay); done <- struct{}{} }()
	go func() { pipe(c, u, delay); done <- struct{}{} }()
	<-done
}

// chunk is bytes read at a time, to be written delay later.
type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst, each chunk delay after it was read, and closes
// dst's write side when src ends.
func pipe(dst, src net.Conn, delay time.Duration) {
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 64<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	for ch := range q {
		time.Sleep(time.Until(ch.at.Add(delay)))
		if _, err := dst.Write(ch.b); err != nil {
			for range q {
			}
			return
		}
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}
