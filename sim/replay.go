package sim

import (
	"context"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/wire"
)

// groupsOf are a's groups now, sorted.
func (f *Fleet) groupsOf(a *agent) []string {
	f.st.mu.Lock()
	defer f.st.mu.Unlock()
	var out []string
	for g, members := range f.byGrp {
		if slices.Contains(members, a) {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out
}

// replayConsumer replays a's missed Commands as upstream agents do on
// their own connection (command_replay.rs): a durable pull consumer
// named natsauth.ReplayConsumer(pc) on EXEC, last per subject, filtered
// on commands.all, its commands.pc.{pc} and its groups; each message is
// acked before it is handled. The consumer remembers what was acked, so a
// restarted agent does not run the same Command again.
func (f *Fleet) replayConsumer(ctx context.Context, a *agent) error {
	s, err := a.js.Stream(ctx, wire.StreamExec)
	if err != nil {
		return fmt.Errorf("sim: replay: stream %s: %w", wire.StreamExec, err)
	}
	filters := []string{wire.SubjectCommandsAll, wire.CommandsPC(a.pcID)}
	for _, g := range f.groupsOf(a) {
		filters = append(filters, wire.CommandsGroup(g))
	}
	c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: natsauth.ReplayConsumer(a.pcID), AckPolicy: jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverLastPerSubjectPolicy, FilterSubjects: filters,
	})
	if err != nil {
		return fmt.Errorf("sim: replay consumer of %s: %w", a.pcID, err)
	}
	for {
		batch, err := c.FetchNoWait(100)
		if err != nil {
			return fmt.Errorf("sim: replay of %s: %w", a.pcID, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if err := m.DoubleAck(ctx); err != nil {
				f.log.Warn("sim: replay ack", "pc_id", a.pcID, "err", err)
			}
			f.deliver(&nats.Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()}, []*agent{a})
		}
		if n == 0 {
			return nil
		}
	}
}
