package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/kanade-go/kanade/services/api"
	adhoc "github.com/kanade-go/kanade/services/run"
	"github.com/kanade-go/kanade/wire"
)

// exitStatus is an error that sets the process's exit status: `kanade run`
// exits with the script's exit code.
type exitStatus struct{ code int }

func (e exitStatus) Error() string { return fmt.Sprintf("the script exited %d", e.code) }

// runCmd runs `kanade run`: an ad-hoc script on one PC through the
// backend's run service (kanade.run, the same as POST /api/run), printing
// the agent's stdout and stderr, and exiting with its exit code.
func runCmd(args []string, stdout, stderr io.Writer) error {
	f := newFlags("run")
	natsURL := f.String("nats-url", "nats://127.0.0.1:4222", "NATS of the backend")
	natsCreds := f.String("nats-creds", "", "credentials file for --nats-url")
	natsUser := f.String("nats-user", "", "user for --nats-url")
	natsPassword := f.String("nats-password", "", "password for --nats-url")
	natsToken := f.String("nats-token", "", "token for --nats-url")
	pc := f.String("pc", "", "the PC to run on (pc_id; required)")
	script := f.String("script", "", "the script text")
	scriptFile := f.String("script-file", "", "read the script from this file (- for standard input)")
	shell := f.String("shell", "powershell", "powershell (ps), pwsh, cmd or sh")
	timeout := f.Int("timeout", adhoc.DefaultTimeoutSecs, "timeout_secs of the run")
	jitter := f.Int("jitter", 0, "jitter_secs: the agent waits a random 0..N s first")
	execID := f.String("exec-id", "", "exec_id, so kill.{exec_id} can stop the run")
	runAs := f.String("run-as", "system", "system, user or system_gui")
	asJSON := f.Bool("json", false, "print the ExecResult JSON instead of its outputs")
	actor := f.String("actor", defaultActor(), "who runs it, for the audit record (a NATS API caller is recorded as itself)")
	if err := f.parse(args); err != nil {
		return err
	}
	if *pc == "" {
		return fmt.Errorf("--pc is required")
	}
	text := *script
	switch {
	case *scriptFile != "" && text != "":
		return fmt.Errorf("give --script or --script-file, not both")
	case *scriptFile == "-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fmt.Errorf("read script: %w", err)
		}
		text = string(b)
	case *scriptFile != "":
		b, err := os.ReadFile(*scriptFile)
		if err != nil {
			return fmt.Errorf("read script: %w", err)
		}
		text = string(b)
	case text == "":
		return fmt.Errorf("--script or --script-file is required")
	}
	req := map[string]any{"pc_id": *pc, "shell": *shell, "script": text, "timeout_secs": *timeout, "run_as": *runAs}
	if *jitter > 0 {
		req["jitter_secs"] = *jitter
	}
	if *execID != "" {
		req["exec_id"] = *execID
	}
	body, err := api.Marshal(req)
	if err != nil {
		return err
	}

	nc, err := nats.Connect(*natsURL, append([]nats.Option{nats.Name("kanade-run")}, natsAuth(*natsCreds, *natsUser, *natsPassword, *natsToken)...)...)
	if err != nil {
		return fmt.Errorf("connect %s: %w", *natsURL, err)
	}
	defer nc.Close()
	wait := time.Duration(*timeout+*jitter)*time.Second + adhoc.DefaultGrace + 5*time.Second
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	msg := &nats.Msg{Subject: adhoc.Subject, Data: body, Header: nats.Header{}}
	if *actor != "" {
		msg.Header.Set(api.HeaderActor, *actor)
	}
	reply, err := nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		if err == nats.ErrNoResponders {
			return fmt.Errorf("no run service answers on %s: is a backend with the scheduler running?", adhoc.Subject)
		}
		return fmt.Errorf("request %s: %w", adhoc.Subject, err)
	}
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		return fmt.Errorf("run on %s: %s (%s)", *pc, bytes.TrimSpace(reply.Data), code)
	}
	res, err := wire.DecodeResult(reply.Data)
	if err != nil {
		return fmt.Errorf("decode ExecResult: %w", err)
	}
	if *asJSON {
		fmt.Fprintf(stdout, "%s\n", reply.Data)
	} else {
		io.WriteString(stdout, res.Stdout)
		io.WriteString(stderr, res.Stderr)
		for _, o := range []*string{res.StdoutObject, res.StderrObject} {
			if o != nil {
				fmt.Fprintf(stderr, "kanade run: output moved to object result_output/%s\n", *o)
			}
		}
	}
	if res.ExitCode != 0 {
		return exitStatus{code: exitByte(res.ExitCode)}
	}
	return nil
}

// exitByte maps an agent exit code onto a process exit status (-1, killed
// or timed out, becomes 255).
func exitByte(code int64) int {
	if code < 0 || code > 255 {
		return 255
	}
	return int(code)
}

func defaultActor() string {
	name := "cli"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = "cli:" + u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	return name
}
