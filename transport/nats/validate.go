package nats

import (
	"fmt"
	"strings"
)

// headerNameForbidden are the printable ASCII characters nats.go refuses
// in a header name, besides space and control characters: the protocol
// (ADR-4) forbids only the colon, the client a few more.
const headerNameForbidden = "\"()/,:;<=>?@[\\]{}"

// checkHeaderName reports why name cannot be a NATS header name, or "".
func checkHeaderName(name string) string {
	if name == "" {
		return "header names cannot be empty"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c <= ' ' || c >= 0x7f:
			return fmt.Sprintf("header name %q has a space, a control or a non-ASCII character (byte %#x)", name, c)
		case strings.IndexByte(headerNameForbidden, c) >= 0:
			return fmt.Sprintf("header name %q has the character %q, which NATS header names cannot hold (none of %s)", name, c, headerNameForbidden)
		}
	}
	return ""
}

// checkHeaderValue reports why value cannot travel intact as a NATS header
// value, or "". The client would replace line breaks with spaces, changing
// the value without a word.
func checkHeaderValue(name, value string) string {
	if strings.ContainsAny(value, "\r\n") {
		return fmt.Sprintf("the value of header %q has a line break, which NATS headers cannot carry", name)
	}
	return ""
}

// checkSubject reports why s is not a subject a message can be published
// to (wildcards false) or read from (wildcards true), or "".
func checkSubject(s string, wildcards bool) string {
	if s == "" {
		return "the subject is empty"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return fmt.Sprintf("subject %q has a space or a control character", s)
		}
	}
	tokens := strings.Split(s, ".")
	for i, t := range tokens {
		switch {
		case t == "":
			return fmt.Sprintf("subject %q has an empty token (a leading, trailing or doubled dot)", s)
		case t == "*" || t == ">":
			if !wildcards {
				return fmt.Sprintf("subject %q has the wildcard %q: messages are published to literal subjects", s, t)
			}
			if t == ">" && i != len(tokens)-1 {
				return fmt.Sprintf("subject %q has the wildcard \">\" before its last token", s)
			}
		}
	}
	return ""
}

// checkName reports why name cannot name a stream or a durable consumer
// (what says which), or "". The rules are the server's: names become
// tokens of API subjects and file names.
func checkName(what, name string) string {
	if name == "" {
		return what + " name is empty"
	}
	if len(name) > 255 {
		return fmt.Sprintf("%s name %q is longer than 255 bytes", what, name)
	}
	if i := strings.IndexAny(name, ">*. /\\"); i >= 0 {
		return fmt.Sprintf("%s name %q has the character %q: names cannot hold dots, wildcards, spaces or slashes", what, name, name[i])
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < ' ' || c == 0x7f {
			return fmt.Sprintf("%s name %q has a control character", what, name)
		}
	}
	return ""
}
