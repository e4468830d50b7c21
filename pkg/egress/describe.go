package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
)

// Describe is the text of a failed attempt that its webhook's owner may read (the error of an
// attempt in the API): the class of the failure, never the address a host name resolved to,
// which may be an internal one ("dial tcp 10.1.2.3:443: connect: connection refused" becomes
// "connection refused"). Logs may keep the full error.
func Describe(err error) string {
	var (
		dns     *net.DNSError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
		verify  *tls.CertificateVerificationError
		record  tls.RecordHeaderError
		alert   tls.AlertError
		nerr    net.Error
	)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrBlockedAddress):
		return "blocked destination: the host is or resolves to a non-public address"
	case errors.As(err, &dns):
		switch {
		case dns.IsNotFound:
			return "DNS failure: no such host"
		case dns.IsTimeout:
			return "DNS failure: timeout"
		}
		return "DNS failure: lookup failed"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &nerr) && nerr.Timeout():
		if t := timeoutText(err); t != "" {
			return "timeout: " + t
		}
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset by the receiver"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &unknown):
		return "TLS error: certificate signed by an unknown authority"
	case errors.As(err, &host):
		return "TLS error: certificate not valid for the host name"
	case errors.As(err, &invalid):
		return "TLS error: certificate invalid (" + invalidReason(invalid.Reason) + ")"
	case errors.As(err, &verify):
		return "TLS error: certificate not verified"
	case errors.As(err, &record), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return "TLS error: the receiver does not speak TLS"
	case errors.As(err, &alert):
		return "TLS error: handshake refused by the receiver (" + alert.Error() + ")"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by the receiver before a response"
	}
	return withoutAddresses(err.Error())
}

// timeoutText keeps egress's own "no response within 5s", which names no address.
func timeoutText(err error) string {
	s := err.Error()
	if !strings.HasPrefix(s, "no response within ") {
		return ""
	}
	s, _, _ = strings.Cut(s, ":")
	return s
}

func invalidReason(r x509.InvalidReason) string {
	switch r {
	case x509.Expired:
		return "expired or not yet valid"
	case x509.NotAuthorizedToSign, x509.CANotAuthorizedForThisName, x509.CANotAuthorizedForExtKeyUsage:
		return "not authorized"
	case x509.IncompatibleUsage:
		return "not for server authentication"
	}
	return "rejected"
}

// addresses matches IPv4 and IPv6 addresses, with or without a port, as Go's errors print them.
var addresses = regexp.MustCompile(`\[[0-9A-Fa-f:.%\w]*:[0-9A-Fa-f:.%\w]*\](:\d+)?|\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b|\b[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}\b`)

// withoutAddresses is the last resort for an error of no known class: its text with every
// address replaced.
func withoutAddresses(s string) string {
	return addresses.ReplaceAllString(s, "<address>")
}
