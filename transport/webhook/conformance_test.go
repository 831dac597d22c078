package webhook

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/transport"
	"github.com/ferry-dev/ferry/transport/transporttest"
)

var testSecret = []byte("conformance-secret")

// TestConformance runs the transport suite with the subscriber side as an
// HTTP server of the test's own: the suite's "broker address" is that
// server's, and it dispatches each push to the subscriber (the suite makes
// several) that has a subscription for the request's path.
func TestConformance(t *testing.T) {
	d := &dispatcher{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: d}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	const maxBody = 64 << 10
	var n atomic.Int64
	transporttest.Run(t, transporttest.Broker{
		Name: "webhook",
		Addr: ln.Addr().String(),
		NewPublisher: func(t *testing.T, addr string) transport.Publisher {
			p, err := NewPublisher(Options{BaseURL: "http://" + addr, Secrets: [][]byte{testSecret}, Timeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		NewSubscriber: func(t *testing.T, addr string) transport.Subscriber {
			s, err := NewSubscriber(SubscriberOptions{Secrets: [][]byte{testSecret}, MaxBody: maxBody, AckTimeout: 4 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			d.add(s)
			return s
		},
		// A relative path, joined to the publisher's BaseURL and matched
		// as "/"+dest by the subscriber: the suite also uses dest as the
		// messages' topic, which the relay's route "*" (path.Match)
		// matches only without a slash.
		NewDest: func(t *testing.T) string {
			name := strings.NewReplacer("/", "-", " ", "_").Replace(t.Name())
			return fmt.Sprintf("conformance-%d-%s", n.Add(1), name)
		},
		Synchronous: true,
		// One publisher pushing a key's messages one after another gets
		// each answered before it sends the next.
		Ordered: true,
		Reject: func(t *testing.T, dest string) (*transport.Message, string) {
			return &transport.Message{ID: "too-large", Topic: dest, Type: "Big", Payload: bytes.Repeat([]byte("x"), maxBody+1)}, "413"
		},
	})
}

// dispatcher hands a request to the newest subscriber serving its path.
type dispatcher struct {
	mu   sync.Mutex
	subs []*Subscriber
}

func (d *dispatcher) add(s *Subscriber) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.subs = append(d.subs, s)
}

func (d *dispatcher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	var target *Subscriber
	for i := len(d.subs) - 1; i >= 0; i-- {
		if d.subs[i].serves(r.URL.Path) {
			target = d.subs[i]
			break
		}
	}
	d.mu.Unlock()
	if target == nil {
		http.Error(w, "no subscription for "+r.URL.Path, http.StatusNotFound)
		return
	}
	target.ServeHTTP(w, r)
}

// serves reports whether a push to path would find a subscription.
func (s *Subscriber) serves(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.routes[path] != nil
}
