// Peer of the approval-verification benchmark in Go: Duo Labs' webauthn library
// (Debian's golang-github-duo-labs-webauthn-dev, built offline in GOPATH mode)
// verifies the same assertions the gateway's verifier does
// (results/assertions.json, written by bench_verify), each from the JSON body, with
// user verification required, on one core (GOMAXPROCS=1).
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run main.go results/assertions.json [seconds]
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/duo-labs/webauthn/protocol"
	"github.com/duo-labs/webauthn/webauthn"
)

type input struct {
	RPID          string `json:"rp_id"`
	Origin        string `json:"origin"`
	CredentialID  string `json:"credential_id"`
	PublicKeyCOSE string `json:"public_key_cose"`
	Assertions    []struct {
		Challenge  string          `json:"challenge"`
		Credential json.RawMessage `json:"credential"`
	} `json:"assertions"`
}

type user struct {
	id   []byte
	cred webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.id }
func (u *user) WebAuthnName() string                       { return "bench" }
func (u *user) WebAuthnDisplayName() string                { return "bench" }
func (u *user) WebAuthnIcon() string                       { return "" }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return []webauthn.Credential{u.cred} }

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func main() {
	runtime.GOMAXPROCS(1)
	raw, err := os.ReadFile(os.Args[1])
	must(err)
	seconds := 3.0
	if len(os.Args) > 2 {
		seconds, err = strconv.ParseFloat(os.Args[2], 64)
		must(err)
	}
	var in input
	must(json.Unmarshal(raw, &in))
	b64 := base64.RawURLEncoding
	credID, err := b64.DecodeString(in.CredentialID)
	must(err)
	cose, err := b64.DecodeString(in.PublicKeyCOSE)
	must(err)
	var first struct {
		Response struct {
			UserHandle string `json:"userHandle"`
		} `json:"response"`
	}
	must(json.Unmarshal(in.Assertions[0].Credential, &first))
	userID, err := b64.DecodeString(first.Response.UserHandle)
	must(err)
	u := &user{id: userID, cred: webauthn.Credential{ID: credID, PublicKey: cose}}
	rp, err := webauthn.New(&webauthn.Config{RPDisplayName: "Countersign", RPID: in.RPID, RPOrigin: in.Origin})
	must(err)

	once := func() int {
		for _, a := range in.Assertions {
			parsed, err := protocol.ParseCredentialRequestResponseBody(bytes.NewReader(a.Credential))
			must(err)
			session := webauthn.SessionData{
				Challenge:            a.Challenge,
				UserID:               userID,
				AllowedCredentialIDs: [][]byte{credID},
				UserVerification:     protocol.VerificationRequired,
			}
			_, err = rp.ValidateLogin(u, session, parsed)
			must(err)
		}
		return len(in.Assertions)
	}
	once() // accepts every assertion before it is timed
	n := 0
	start := time.Now()
	for time.Since(start).Seconds() < seconds {
		n += once()
	}
	out := map[string]any{
		"benchmark":    "approval-verification-peers",
		"language":     runtime.Version(),
		"seconds_each": seconds,
		"per_second":   map[string]float64{"go_duo_labs_webauthn": float64(n) / time.Since(start).Seconds()},
		"versions":     map[string]string{"go_duo_labs_webauthn": "Debian 0.0~git20220815.00c9fb5"},
	}
	j, err := json.MarshalIndent(out, "", "  ")
	must(err)
	fmt.Println(string(j))
}
