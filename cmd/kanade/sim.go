package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/natsauth"
	"github.com/kanade-go/kanade/signing"
	"github.com/kanade-go/kanade/sim"
)

// simCmd runs `kanade sim`: a fleet of simulated agents against any NATS,
// with a summary line every few seconds, until SIGINT or SIGTERM.
func simCmd(args []string) error {
	f := newFlags("sim")
	natsURL := f.String("nats-url", "nats://127.0.0.1:4222", "NATS the agents connect to")
	natsCreds := f.String("nats-creds", "", "credentials file for --nats-url")
	natsUser := f.String("nats-user", "", "user for --nats-url")
	natsPassword := f.String("nats-password", "", "password for --nats-url")
	natsToken := f.String("nats-token", "", "token for --nats-url")
	natsConfig := f.String("nats-config", "", "a configuration kanade nats-users wrote: each agent connects on its own pc_id's credential (the file's agents, --agents of them at most); --nats-user etc. then only write agent_groups")
	agents := f.Int("agents", 10, "how many simulated agents")
	prefix := f.String("prefix", "sim-pc-", "pc_id prefix: the agents are PREFIX0001, PREFIX0002, …")
	first := f.Int("first", 1, "number of the first pc_id (run several sim processes side by side)")
	groups := f.String("groups", "", "comma list of groups, dealt round-robin (agent i is in group i mod n)")
	mix := f.String("mix", "success=90,failure=5,timeout=5", "outcome weights of synthetic runs")
	duration := f.String("duration", "1s-10s", "run time of synthetic runs: MIN-MAX or one value")
	output := f.String("output", "2KiB", "stdout of a synthetic run, printed progressively")
	execScripts := f.Bool("exec", false, "really run sh scripts (other shells exit 122) instead of synthetic runs")
	heartbeat := f.Duration("heartbeat", 30*time.Second, "heartbeat interval")
	replay := f.Bool("replay", false, "at start, run the last Command EXEC keeps for each agent subject (default: only new Commands)")
	subs := f.String("subscriptions", string(sim.Shared), "shared (one subscription per subject pattern) or per-agent")
	msgIDs := f.Bool("msg-ids", false, "set a Nats-Msg-Id on results and started events so the streams drop retried publishes (real agents set none)")
	duplicates := f.Float64("duplicates", 0, "fraction (0-1) of results and started events published twice, as after a lost ack")
	summary := f.Duration("summary", 5*time.Second, "interval of the summary line")
	logLevel := f.String("log-level", "info", "debug, info, warn or error")
	commandKeys := f.String("command-keys", "", `keyring the agents verify Commands with, as upstream agents hold it: [{"kid":…,"public_key":…}]; the agents then enforce (exit 123 for anything not signed by it)`)
	commandKeysFile := f.String("command-keys-file", "", "file holding the --command-keys JSON (e.g. an agent's /etc/kanade/command-keys.json)")
	if err := f.parse(args); err != nil {
		return err
	}
	log, err := newLogger(os.Stderr, *logLevel)
	if err != nil {
		return err
	}
	o := sim.Options{
		Agents: *agents, Prefix: *prefix, First: *first, Exec: *execScripts, Heartbeat: *heartbeat,
		Replay: *replay, Subscriptions: sim.Subscriptions(*subs), MsgIDs: *msgIDs, Duplicates: *duplicates, Logger: log,
	}
	if *groups != "" {
		for _, g := range strings.Split(*groups, ",") {
			o.Groups = append(o.Groups, strings.TrimSpace(g))
		}
	}
	if err := o.Mix.ParseWeights(*mix); err != nil {
		return fmt.Errorf("--mix: %w", err)
	}
	if o.Mix.MinDuration, o.Mix.MaxDuration, err = sim.ParseDurationRange(*duration); err != nil {
		return fmt.Errorf("--duration: %w", err)
	}
	if o.Mix.OutputBytes, err = sim.ParseBytes(*output); err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	if o.Keyring, err = simKeyring(*commandKeys, *commandKeysFile); err != nil {
		return err
	}
	if *summary <= 0 {
		return fmt.Errorf("--summary must be positive")
	}
	if err := o.Validate(); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *natsConfig != "" {
		creds, err := natsauth.AgentCredentials(*natsConfig)
		if err != nil {
			return fmt.Errorf("--nats-config: %w", err)
		}
		o.PCIDs = natsauth.SortedPCs(creds)
		if len(o.PCIDs) > *agents {
			o.PCIDs = o.PCIDs[:*agents]
		}
		o.AgentConn = func(pc string) (*nats.Conn, error) {
			return connectSim(ctx, *natsURL, []nats.Option{nats.UserInfo(pc, creds[pc]), nats.Name("kanade-sim-" + pc)}, log)
		}
		if err := o.Validate(); err != nil {
			return err
		}
	}
	auth := natsAuth(*natsCreds, *natsUser, *natsPassword, *natsToken)
	if *natsConfig == "" || auth != nil {
		nc, err := connectSim(ctx, *natsURL, auth, log)
		if err != nil {
			return err
		}
		defer nc.Close()
		o.Conn = nc
	}
	fleet, err := sim.Start(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "kanade sim: %d agents %s … on %s\n", len(fleet.PCIDs()), fleet.PCIDs()[0], *natsURL)
	if o.Keyring != nil {
		fmt.Fprintf(os.Stderr, "kanade sim: enforcing signatures, keys %v\n", o.Keyring.CommandKeys())
	}
	tick := time.NewTicker(*summary)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Fprintf(os.Stderr, "kanade sim: %v heap=%dMiB\n", fleet.Stats(), m.HeapInuse>>20)
		case <-ctx.Done():
			fleet.Stop()
			fmt.Fprintln(os.Stderr, "kanade sim: stopped:", fleet.Stats())
			return nil
		}
	}
}

// simKeyring reads the agents' keyring from the flag or the file (nil:
// the agents do not verify).
func simKeyring(inline, file string) (*signing.Keyring, error) {
	switch {
	case inline != "" && file != "":
		return nil, errors.New("--command-keys and --command-keys-file: one or the other")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--command-keys-file: %w", err)
		}
		inline = string(b)
	case inline == "":
		return nil, nil
	}
	k, err := signing.ParseKeyring([]byte(inline))
	if err != nil {
		return nil, fmt.Errorf("--command-keys: %w", err)
	}
	if k.Len() == 0 {
		return nil, errors.New("--command-keys: the keyring is empty (an agent with no keys does not enforce)")
	}
	return k, nil
}

// natsAuth turns the credential flags into a connect option.
func natsAuth(creds, user, password, token string) []nats.Option {
	switch {
	case creds != "":
		return []nats.Option{nats.UserCredentials(creds)}
	case user != "":
		return []nats.Option{nats.UserInfo(user, password)}
	case token != "":
		return []nats.Option{nats.Token(token)}
	}
	return nil
}

// connectSim connects as agents do: retrying until NATS answers, then
// reconnecting forever.
func connectSim(ctx context.Context, url string, extra []nats.Option, log *slog.Logger) (*nats.Conn, error) {
	opts := append([]nats.Option{
		nats.Name("kanade-sim"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrl()) }),
	}, extra...)
	for attempt := 1; ; attempt++ {
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			return nc, nil
		}
		if errors.Is(err, nats.ErrAuthorization) || strings.Contains(err.Error(), "Authorization") {
			return nil, fmt.Errorf("connect %s: %w", url, err)
		}
		log.Warn("nats not reachable; retrying", "url", url, "err", err, "attempt", attempt)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect %s: %w", url, err)
		case <-time.After(2 * time.Second):
		}
	}
}
