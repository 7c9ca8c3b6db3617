package projector

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/store"
	"github.com/kanade-go/kanade/wire"
)

// heartbeats buffers the newest heartbeat of each PC (core NATS, no
// stream) and writes them about once a second in one transaction: a fleet
// of thousands heartbeating every 30 s is a hundred rows a second, not a
// hundred transactions.
type heartbeats struct {
	p   *Projector
	sub *nats.Subscription

	mu  sync.Mutex
	buf map[string]heartbeat

	received atomic.Uint64
	invalid  atomic.Uint64
	// mismatched counts heartbeats whose pc_id is not their subject's
	// (heartbeat.{pc_id}, the only one the sender's account may publish).
	mismatched atomic.Uint64
}

type heartbeat struct {
	wire.Heartbeat
	at time.Time
}

// flushEvery is the heartbeat write interval; maxBuffered flushes early.
const (
	flushEvery  = time.Second
	maxBuffered = 100_000
)

const sqlAgent = `INSERT INTO agents (pc_id, hostname, os_family, agent_version, last_heartbeat,
	agent_cpu_pct, agent_rss_bytes, last_logon_user, last_logon_display_name,
	updated_at, agent_disk_read_bytes, agent_disk_written_bytes, quarantined_versions, command_keys, enforcing)
	VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
	ON CONFLICT (pc_id) DO UPDATE SET
	hostname = COALESCE(excluded.hostname, hostname),
	os_family = COALESCE(excluded.os_family, os_family),
	agent_version = excluded.agent_version,
	last_heartbeat = excluded.last_heartbeat,
	agent_cpu_pct = excluded.agent_cpu_pct,
	agent_rss_bytes = excluded.agent_rss_bytes,
	last_logon_user = COALESCE(excluded.last_logon_user, last_logon_user),
	last_logon_display_name = COALESCE(excluded.last_logon_display_name, last_logon_display_name),
	updated_at = excluded.updated_at,
	agent_disk_read_bytes = excluded.agent_disk_read_bytes,
	agent_disk_written_bytes = excluded.agent_disk_written_bytes,
	quarantined_versions = excluded.quarantined_versions,
	command_keys = COALESCE(excluded.command_keys, command_keys),
	enforcing = COALESCE(excluded.enforcing, enforcing)`

// jsonList is a heartbeat list as stored: NULL when the agent sent none,
// so "never reported" and "[]" stay apart.
func jsonList(v []string) any {
	if v == nil {
		return nil
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func newHeartbeats(p *Projector) *heartbeats {
	return &heartbeats{p: p, buf: map[string]heartbeat{}}
}

func (h *heartbeats) subscribe() error {
	sub, err := h.p.o.Conn.Subscribe(wire.SubjectHeartbeatsAll, h.receive)
	if err != nil {
		return fmt.Errorf("projector: subscribe heartbeats: %w", err)
	}
	sub.SetPendingLimits(maxBuffered, 256<<20)
	h.sub = sub
	// Heartbeats are core messages: one sent before the server has our
	// interest is gone. A round trip makes the subscription live before
	// Start returns (a test under load lost its heartbeats without it).
	// Not fatal: the client re-sends its subscriptions when it reconnects.
	if err := h.p.o.Conn.FlushTimeout(5 * time.Second); err != nil {
		h.p.log.Warn("projector: heartbeat subscription not confirmed", "err", err)
	}
	return nil
}

func (h *heartbeats) unsubscribe() {
	if h.sub != nil {
		h.sub.Unsubscribe()
	}
}

func (h *heartbeats) receive(m *nats.Msg) {
	hb, err := wire.DecodeHeartbeat(m.Data)
	if err != nil {
		h.invalid.Add(1)
		h.p.log.Debug("projector: invalid heartbeat", "subject", m.Subject, "err", err)
		return
	}
	if pc := strings.TrimPrefix(m.Subject, "heartbeat."); pc != hb.PCID {
		h.mismatched.Add(1)
		h.p.log.Debug("projector: heartbeat pc_id differs from its subject; dropped", "subject", m.Subject, "pc_id", hb.PCID)
		return
	}
	h.received.Add(1)
	// An agent's clock, or a forged at, cannot keep it alive in the future.
	now := time.Now()
	at := hb.At
	if at.IsZero() || at.After(now) {
		at = now
	}
	h.mu.Lock()
	if old, ok := h.buf[hb.PCID]; !ok || !at.Before(old.at) {
		h.buf[hb.PCID] = heartbeat{Heartbeat: hb, at: at}
	}
	h.mu.Unlock()
}

// run flushes every second until ctx ends, then once more.
func (h *heartbeats) run(ctx context.Context) {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			h.flush()
		case <-ctx.Done():
			h.flush()
			return
		}
	}
}

func (h *heartbeats) flush() {
	h.mu.Lock()
	buf := h.buf
	if len(buf) == 0 {
		h.mu.Unlock()
		return
	}
	h.buf = map[string]heartbeat{}
	h.mu.Unlock()
	var added int64
	err := h.p.db.WriteTx(context.Background(), func(tx *sql.Tx) error {
		// The rows added are the buffered PCs not there yet: a lookup of
		// these keys, not a count of the whole table.
		ids := make([]string, 0, len(buf))
		for pc := range buf {
			ids = append(ids, pc)
		}
		js, _ := json.Marshal(ids)
		var existing int64
		if err := tx.QueryRow(`SELECT count(*) FROM agents WHERE pc_id IN (SELECT value FROM json_each(?))`,
			string(js)).Scan(&existing); err != nil {
			return err
		}
		added = int64(len(buf)) - existing
		st, err := tx.Prepare(sqlAgent)
		if err != nil {
			return err
		}
		defer st.Close()
		written := store.FormatTime(time.Now())
		for _, hb := range buf {
			if _, err := st.Exec(hb.PCID, hb.Hostname, hb.OSFamily, hb.AgentVersion, store.FormatTime(hb.at),
				hb.AgentCPUPct, hb.AgentRSSBytes, hb.LastLogonUser, hb.LastLogonDisplayName,
				written, hb.AgentDiskReadBytes, hb.AgentDiskWrittenBytes, jsonList(hb.QuarantinedVersions),
				jsonList(hb.CommandKeys), hb.Enforcing); err != nil {
				return fmt.Errorf("agent %s: %w", hb.PCID, err)
			}
		}
		return nil
	})
	if err != nil {
		// Heartbeats are not in a stream: put them back for the next try
		// unless newer ones came in meanwhile.
		h.p.log.Warn("projector: write heartbeats", "err", err)
		h.mu.Lock()
		for pc, hb := range buf {
			if _, ok := h.buf[pc]; !ok && len(h.buf) < maxBuffered {
				h.buf[pc] = hb
			}
		}
		h.mu.Unlock()
		return
	}
	h.p.rowsAgents.Add(added)
}
