package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// instance is one service instance speaking the NATS micro protocol:
// its endpoints' queue subscriptions and the $SRV.PING, $SRV.INFO and
// $SRV.STATS answers `nats micro` reads, with micro's own types.
//
// It is not micro.AddService because micro records an endpoint's stats
// when its handler returns, and ours return as soon as the request is
// handed to the worker pool: micro would time the hand-off (microseconds)
// and count no error replies. Here stats are recorded where the reply is
// sent.
type instance struct {
	id       string
	name     string
	desc     string
	meta     map[string]string
	started  time.Time
	verbSubs []*nats.Subscription

	mu        sync.Mutex
	endpoints []*endpoint
}

// endpoint is one endpoint of an instance and its stats.
type endpoint struct {
	info micro.EndpointInfo
	sub  *nats.Subscription

	mu    sync.Mutex
	stats micro.EndpointStats
}

// queueGroup is micro's default: instances of a service share the work.
const queueGroup = "q"

var nameRE = regexp.MustCompile(`^[A-Za-z0-9\-_]+$`)

// newInstance validates the service's identity and answers its micro
// control subjects on nc.
func newInstance(nc *nats.Conn, s Service) (*instance, error) {
	if !nameRE.MatchString(s.Name) {
		return nil, fmt.Errorf("service name %q: only A-Z a-z 0-9 - _", s.Name)
	}
	in := &instance{
		id:      strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix), // a nuid, as micro's
		name:    s.Name,
		desc:    s.Description,
		meta:    maps.Clone(s.Metadata),
		started: time.Now().UTC(),
	}
	verbs := map[micro.Verb]func() any{
		micro.PingVerb:  func() any { return micro.Ping{ServiceIdentity: in.identity(), Type: micro.PingResponseType} },
		micro.InfoVerb:  func() any { return in.Info() },
		micro.StatsVerb: func() any { return in.Stats() },
	}
	for verb, answer := range verbs {
		for _, subj := range [][2]string{{"", ""}, {in.name, ""}, {in.name, in.id}} {
			s, err := micro.ControlSubject(verb, subj[0], subj[1])
			if err == nil {
				var sub *nats.Subscription
				sub, err = nc.Subscribe(s, func(m *nats.Msg) {
					if !ReplySubjectAllowed(m.Reply) {
						return // see ReplySubjectAllowed
					}
					b, _ := json.Marshal(answer())
					m.Respond(b)
				})
				in.verbSubs = append(in.verbSubs, sub)
			}
			if err != nil {
				in.stop(0)
				return nil, fmt.Errorf("service %s: control subject: %w", in.name, err)
			}
		}
	}
	return in, nil
}

// addEndpoint subscribes to subject in the queue group; handle is called
// on the subscription's goroutine with the time the request arrived.
func (in *instance) addEndpoint(nc *nats.Conn, name, subject string, meta map[string]string, handle func(*endpoint, *nats.Msg, time.Time)) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("endpoint name %q: only A-Z a-z 0-9 - _", name)
	}
	ep := &endpoint{
		info:  micro.EndpointInfo{Name: name, Subject: subject, QueueGroup: queueGroup, Metadata: meta},
		stats: micro.EndpointStats{Name: name, Subject: subject, QueueGroup: queueGroup},
	}
	sub, err := nc.QueueSubscribe(subject, queueGroup, func(m *nats.Msg) { handle(ep, m, time.Now()) })
	if err != nil {
		return err
	}
	ep.sub = sub
	in.mu.Lock()
	in.endpoints = append(in.endpoints, ep)
	in.mu.Unlock()
	return nil
}

// record counts one answered request: how long it took from arrival to
// the reply being sent, and whether the reply (its headers) is an error,
// kept as micro keeps it: "404:no such thing".
func (ep *endpoint) record(took time.Duration, reply nats.Header) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	st := &ep.stats
	st.NumRequests++
	st.ProcessingTime += took
	st.AverageProcessingTime = st.ProcessingTime / time.Duration(st.NumRequests)
	if code := reply.Get(micro.ErrorCodeHeader); code != "" {
		st.NumErrors++
		st.LastError = code + ":" + reply.Get(micro.ErrorHeader)
	}
}

func (in *instance) identity() micro.ServiceIdentity {
	return micro.ServiceIdentity{Name: in.name, ID: in.id, Version: Version, Metadata: maps.Clone(in.meta)}
}

// Info is what $SRV.INFO answers.
func (in *instance) Info() micro.Info {
	in.mu.Lock()
	defer in.mu.Unlock()
	eps := make([]micro.EndpointInfo, 0, len(in.endpoints))
	for _, ep := range in.endpoints {
		i := ep.info
		i.Metadata = maps.Clone(i.Metadata)
		eps = append(eps, i)
	}
	return micro.Info{ServiceIdentity: in.identity(), Type: micro.InfoResponseType, Description: in.desc, Endpoints: eps}
}

// Stats is what $SRV.STATS answers.
func (in *instance) Stats() micro.Stats {
	in.mu.Lock()
	eps := append([]*endpoint(nil), in.endpoints...)
	in.mu.Unlock()
	st := micro.Stats{ServiceIdentity: in.identity(), Type: micro.StatsResponseType, Started: in.started, Endpoints: make([]*micro.EndpointStats, 0, len(eps))}
	for _, ep := range eps {
		ep.mu.Lock()
		s := ep.stats
		ep.mu.Unlock()
		st.Endpoints = append(st.Endpoints, &s)
	}
	return st
}

// stop drains the endpoint subscriptions (requests already delivered
// still reach handle), waits up to wait for the drains to finish, and
// leaves the control subjects.
func (in *instance) stop(wait time.Duration) error {
	in.mu.Lock()
	eps := in.endpoints
	in.endpoints = nil
	in.mu.Unlock()
	var errs []error
	for _, ep := range eps {
		if err := ep.sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("drain %s: %w", ep.info.Subject, err))
		}
	}
	deadline := time.Now().Add(wait)
	for _, ep := range eps {
		for ep.sub.IsValid() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, sub := range in.verbSubs {
		if err := sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
