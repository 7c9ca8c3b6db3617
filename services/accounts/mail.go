package accounts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"
)

// Mail is the SMTP relay that carries password setup and reset links
// (upstream's [mail]).
type Mail struct {
	Addr     string // host:port of the relay
	From     string // envelope and header sender
	Username string // optional PLAIN auth (only over TLS, as net/smtp insists)
	Password string
	// TLS configures STARTTLS, used whenever the relay offers it; nil
	// verifies the relay's certificate against its host name.
	TLS *tls.Config
}

// check tells whether the relay settings can work at all.
func (m *Mail) check() error {
	if _, _, err := net.SplitHostPort(m.Addr); err != nil {
		return fmt.Errorf("mail relay %q: want host:port: %w", m.Addr, err)
	}
	if _, err := mail.ParseAddress(m.From); err != nil {
		return fmt.Errorf("mail from %q: %w", m.From, err)
	}
	return nil
}

// Configured tells whether mail can be sent.
func (m *Mail) Configured() bool { return m != nil && m.Addr != "" && m.From != "" }

// send delivers one plain-text message to one recipient.
func (m *Mail) send(ctx context.Context, to, subject, body string) error {
	if !m.Configured() {
		return errors.New("mail not configured")
	}
	if strings.ContainsAny(to, "\r\n") || strings.ContainsAny(subject, "\r\n") {
		return errors.New("mail: header injection refused")
	}
	host, _, err := net.SplitHostPort(m.Addr)
	if err != nil {
		return fmt.Errorf("mail relay %q: %w", m.Addr, err)
	}
	d := net.Dialer{Timeout: 15 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", m.Addr)
	if err != nil {
		return fmt.Errorf("mail relay: %w", err)
	}
	// One deadline for the whole conversation: a stuck relay cannot hold
	// the sender for ever.
	deadline := time.Now().Add(time.Minute)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("mail relay greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello("kanade"); err != nil {
		return fmt.Errorf("mail EHLO: %w", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := m.TLS
		if cfg == nil {
			cfg = &tls.Config{ServerName: host}
		}
		if err := c.StartTLS(cfg); err != nil {
			return fmt.Errorf("mail STARTTLS: %w", err)
		}
	}
	if m.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", m.Username, m.Password, host)); err != nil {
			return fmt.Errorf("mail auth: %w", err)
		}
	}
	from, err := mail.ParseAddress(m.From)
	if err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := c.Mail(from.Address); err != nil {
		return fmt.Errorf("mail from: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("mail rcpt: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("mail data: %w", err)
	}
	msg := "From: " + m.From + "\r\nTo: " + to + "\r\nSubject: " + mimeWord(subject) +
		"\r\nDate: " + time.Now().UTC().Format(time.RFC1123Z) +
		"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n")
	if _, err := w.Write([]byte(msg)); err != nil {
		return fmt.Errorf("mail body: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("mail body: %w", err)
	}
	return c.Quit()
}

// mimeWord encodes a subject with non-ASCII text (RFC 2047).
func mimeWord(s string) string {
	for _, r := range s {
		if r > 127 {
			return mime.QEncoding.Encode("UTF-8", s)
		}
	}
	return s
}

// linkMail is the bilingual (Japanese, then English) message carrying a
// setup or reset link.
func linkMail(user, purpose, link string, expires time.Time) (subject, body string) {
	until := expires.UTC().Format("2006-01-02 15:04 UTC")
	if purpose == purposeReset {
		subject = "[kanade] パスワード再設定 / Password reset"
		body = "kanade アカウント「" + user + "」のパスワード再設定が要求されました。\n" +
			"次のリンクから新しいパスワードを設定してください（" + until + " まで有効、1 回限り）:\n\n" +
			link + "\n\n心当たりがない場合は、このメールを無視してください。\n\n" +
			"----\n\n" +
			"A password reset was requested for the kanade account \"" + user + "\".\n" +
			"Set a new password at this link (valid until " + until + ", once):\n\n" +
			link + "\n\nIf you did not ask for this, ignore this message.\n"
		return subject, body
	}
	subject = "[kanade] アカウントのパスワード設定 / Set up your password"
	body = "kanade のアカウント「" + user + "」が作成されました。\n" +
		"次のリンクからパスワードを設定してください（" + until + " まで有効、1 回限り）:\n\n" +
		link + "\n\n" +
		"----\n\n" +
		"A kanade account \"" + user + "\" was created for you.\n" +
		"Set its password at this link (valid until " + until + ", once):\n\n" +
		link + "\n"
	return subject, body
}
