package nodetest

import (
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mail is one message an SMTP relay of SMTP took.
type Mail struct {
	From, To, Data string
}

// SMTP is a minimal SMTP relay on 127.0.0.1:0 for tests of the mail the
// backend sends: it accepts every message (no TLS, no auth offered) and
// hands each to take, on the connection's goroutine. It stops when the
// test ends. It returns the relay's host:port.
func SMTP(t testing.TB, take func(Mail)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); serveSMTP(c, take) }()
		}
	}()
	return ln.Addr().String()
}

func serveSMTP(c net.Conn, take func(Mail)) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	tp := textproto.NewConn(c)
	tp.PrintfLine("220 test relay")
	var m Mail
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "EHLO" || verb == "HELO":
			tp.PrintfLine("250-test relay\r\n250 8BITMIME")
		case strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:"):
			m.From = line[len("MAIL FROM:"):]
			tp.PrintfLine("250 ok")
		case strings.HasPrefix(strings.ToUpper(line), "RCPT TO:"):
			m.To = line[len("RCPT TO:"):]
			tp.PrintfLine("250 ok")
		case verb == "DATA":
			tp.PrintfLine("354 go on")
			b, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			m.Data = string(b)
			take(m)
			m = Mail{}
			tp.PrintfLine("250 queued")
		case verb == "QUIT":
			tp.PrintfLine("221 bye")
			return
		default:
			tp.PrintfLine("250 ok")
		}
	}
}
