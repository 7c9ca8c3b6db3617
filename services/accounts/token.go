package accounts

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// Audience is every token's aud claim.
const Audience = "kanade"

// DefaultSessionTTL is a token's lifetime (upstream's default).
const DefaultSessionTTL = 24 * time.Hour

// claims are upstream's: sub, exp, aud and roles (one role); no iat/nbf/jti.
type claims struct {
	Roles []string `json:"roles"`
	jwt.RegisteredClaims
}

// mint signs a token for user, valid until exp.
func mint(secret []byte, user, role string, exp time.Time) (string, error) {
	c := claims{Roles: []string{role}, RegisteredClaims: jwt.RegisteredClaims{
		Subject: user, ExpiresAt: jwt.NewNumericDate(exp), Audience: jwt.ClaimStrings{Audience},
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// parse checks a token (HS256 only, aud kanade, exp required, 60 s leeway)
// and returns its subject. The role claim is not trusted: the account is.
func parse(secret []byte, token string, now time.Time) (string, error) {
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithAudience(Audience), jwt.WithExpirationRequired(),
		jwt.WithLeeway(60*time.Second), jwt.WithTimeFunc(func() time.Time { return now }))
	if err != nil {
		return "", err
	}
	if c.Subject == "" {
		return "", fmt.Errorf("token has no subject")
	}
	return c.Subject, nil
}

// Upstream's TOTP: SHA1, 6 digits, 30 s, one step of skew either side,
// issuer kanade, 160-bit secrets.
var totpOpts = totp.ValidateOpts{Period: 30, Skew: 1, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// newTOTP makes a secret and its otpauth URL for user.
func newTOTP(user string) (secret, url string, err error) {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: "kanade", AccountName: user, SecretSize: 20,
		Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", "", err
	}
	return k.Secret(), k.URL(), nil
}

// checkTOTP tells whether code is valid for secret now.
// A code of the wrong length is wrong, not an error; an undecodable
// secret is.
func checkTOTP(secret, code string, now time.Time) (bool, error) {
	ok, err := totp.ValidateCustom(strings.TrimSpace(code), secret, now, totpOpts)
	if errors.Is(err, otp.ErrValidateInputInvalidLength) {
		return false, nil
	}
	return ok, err
}

// TOTPCode is the code of secret at t (for tests and tools).
func TOTPCode(secret string, t time.Time) (string, error) {
	return totp.GenerateCodeCustom(secret, t, totpOpts)
}
