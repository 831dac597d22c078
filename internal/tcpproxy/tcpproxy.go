// Package tcpproxy is a TCP proxy for tests that need a server to go away
// and come back: a listener on a loopback port that forwards every
// connection to a target address, and that can be cut (every connection
// closed, new ones refused, as when a database restarts) and restored.
//
//	p, err := tcpproxy.New("127.0.0.1:5432")
//	// connect through p.Addr() instead of the target ...
//	p.Cut()     // connections drop; connecting fails with "connection refused"
//	p.Restore() // connecting works again, on the same port
//
// NewTLS makes a proxy that terminates TLS in front of a plain server, to
// test clients' TLS settings against a real broker that speaks none.
package tcpproxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
)

// Proxy forwards connections from a loopback port to a target address.
// Its methods are safe for concurrent use.
type Proxy struct {
	target string
	addr   string      // the listening address; stays the same across Cut and Restore
	tls    *tls.Config // terminates TLS on accepted connections; nil: plain TCP

	mu       sync.Mutex
	ln       net.Listener // nil while cut
	conns    map[net.Conn]struct{}
	accepted int
	closed   bool
	wg       sync.WaitGroup
}

// New listens on a random port of 127.0.0.1 and forwards each connection
// to target (host:port).
func New(target string) (*Proxy, error) { return NewTLS(target, nil) }

// NewTLS is New with clients speaking TLS to the proxy, which speaks plain
// TCP to target. config holds the proxy's certificate (and ClientAuth, to
// require client certificates); nil means plain TCP, as New.
func NewTLS(target string, config *tls.Config) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tcpproxy: listen: %w", err)
	}
	p := &Proxy{target: target, addr: ln.Addr().String(), tls: config, conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	return p, nil
}

// Addr is the proxy's address, host:port.
func (p *Proxy) Addr() string { return p.addr }

// Port is the proxy's port.
func (p *Proxy) Port() int {
	_, port, _ := net.SplitHostPort(p.addr)
	n, _ := strconv.Atoi(port)
	return n
}

// Accepted is how many connections the proxy has accepted so far.
func (p *Proxy) Accepted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Cut closes every connection, on both sides, and stops listening: new
// connections are refused until Restore. Cutting a cut proxy does nothing.
func (p *Proxy) Cut() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for c := range conns {
		c.Close()
	}
}

// Restore listens again on the same port. Restoring a proxy that is not
// cut does nothing.
func (p *Proxy) Restore() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return errors.New("tcpproxy: restore after Close")
	}
	if p.ln != nil {
		return nil
	}
	// Go sets SO_REUSEADDR, so the port is free again at once even with
	// the old connections in TIME_WAIT.
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("tcpproxy: listen again on %s: %w", p.addr, err)
	}
	p.serveLocked(ln)
	return nil
}

// Close cuts the proxy for good and waits for its goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.Cut()
	p.wg.Wait()
	return nil
}

func (p *Proxy) serve(ln net.Listener) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.serveLocked(ln)
}

func (p *Proxy) serveLocked(ln net.Listener) {
	if p.tls != nil {
		ln = tls.NewListener(ln, p.tls)
	}
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // the listener was closed by Cut
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(ln, c)
			}()
		}
	}()
}

// forward pipes client to a new connection to the target until either
// side closes or the proxy is cut.
func (p *Proxy) forward(ln net.Listener, client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	if p.ln != ln { // cut while this connection was being set up
		p.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	p.accepted++
	p.conns[client] = struct{}{}
	p.conns[server] = struct{}{}
	p.mu.Unlock()

	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	// One direction ended: end both, as a server that goes away would.
	client.Close()
	server.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}
