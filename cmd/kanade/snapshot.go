package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/kanade-go/kanade/services/api"
	"github.com/kanade-go/kanade/services/snapshot"
)

// snapshotCmd asks a node, over NATS, to snapshot its projection now (or
// lists the snapshots) and prints the answer.
func snapshotCmd(args []string) error {
	f := newFlags("snapshot")
	natsURL := f.String("nats-url", "nats://127.0.0.1:4222", "NATS of the kanade cluster")
	natsCreds := f.String("nats-creds", "", "credentials file for --nats-url")
	natsUser := f.String("nats-user", "", "user for --nats-url")
	natsPassword := f.String("nats-password", "", "password for --nats-url")
	natsToken := f.String("nats-token", "", "token for --nats-url")
	timeout := f.Duration("timeout", 30*time.Minute, "how long to wait for the snapshot")
	list := f.Bool("list", false, "list the snapshots instead of making one")
	if err := f.parse(args); err != nil {
		return err
	}
	nc, err := nats.Connect(*natsURL, append([]nats.Option{nats.Name("kanade-snapshot")},
		natsAuth(*natsCreds, *natsUser, *natsPassword, *natsToken)...)...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", *natsURL, err)
	}
	defer nc.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	subject := snapshot.SubjectCreate
	if *list {
		subject = snapshot.SubjectList
	} else {
		fmt.Fprintln(os.Stderr, "kanade snapshot: asking a node for a snapshot of its projection…")
	}
	msg := nats.NewMsg(subject)
	msg.Data = []byte("{}")
	actor := "cli"
	if u, err := user.Current(); err == nil {
		actor = "cli:" + u.Username
	}
	msg.Header.Set(api.HeaderActor, actor)
	// The queue group picks any node: one still catching up answers 503,
	// another may be ready; and a bucket whose replicas are still electing
	// a leader fails a write (500). Both are tried again a few times.
	var reply *nats.Msg
	for attempt := 1; ; attempt++ {
		reply, err = nc.RequestMsgWithContext(ctx, msg)
		if errors.Is(err, nats.ErrNoResponders) {
			return fmt.Errorf("no node answers %s (is a node with the projector running, and its projection without history gaps?)", subject)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", subject, err)
		}
		code := reply.Header.Get("Nats-Service-Error-Code")
		if code == "" {
			break
		}
		if code != "503" && code != "500" || attempt >= 5 {
			return fmt.Errorf("%s: %s %s", subject, code, reply.Header.Get("Nats-Service-Error"))
		}
		fmt.Fprintf(os.Stderr, "kanade snapshot: %s; trying again\n", reply.Header.Get("Nats-Service-Error"))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	var v any
	if err := json.Unmarshal(reply.Data, &v); err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	out, _ := json.MarshalIndent(v, "", "  ")
	fmt.Println(string(out))
	return nil
}
