package iot

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// amazonRootCA is where the root the real endpoints chain to is published.
const amazonRootCA = "https://www.amazontrust.com/repository/AmazonRootCA1.pem"

// readFile reads one of the configured files, saying in plain words why it
// cannot.
func readFile(what, path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("no %s file given", what)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fileError(what, path, err)
	}
	return b, nil
}

// fileError says in plain words why a file cannot be read.
func fileError(what, path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("the %s file %s does not exist", what, path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("cannot read the %s file %s: permission denied; kvsgo runs as %s: make the file readable to it "+
			"(e.g. chgrp GROUP %s && chmod 640 %s)", what, path, whoAmI(), path, path)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.Contains(pe.Err.Error(), "is a directory") {
		return fmt.Errorf("the %s file %s is a directory", what, path)
	}
	return fmt.Errorf("cannot read the %s file: %w", what, err)
}

func whoAmI() string {
	uid := strconv.Itoa(os.Getuid())
	if u, err := user.LookupId(uid); err == nil {
		return "user " + u.Username
	}
	return "uid " + uid
}

// pemTypes lists the PEM block types in b.
func pemTypes(b []byte) []string {
	var types []string
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return types
		}
		types = append(types, blk.Type)
	}
}

func hasKey(types []string) bool {
	for _, t := range types {
		if strings.HasSuffix(t, "PRIVATE KEY") {
			return true
		}
	}
	return false
}

func hasCert(types []string) bool {
	for _, t := range types {
		if t == "CERTIFICATE" {
			return true
		}
	}
	return false
}

// loadKeyPair reads the device certificate and its private key.
func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readFile("certificate", certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readFile("private key", keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	ct, kt := pemTypes(certPEM), pemTypes(keyPEM)
	switch {
	case !hasCert(ct) && hasKey(ct) && hasCert(kt):
		return tls.Certificate{}, fmt.Errorf("the certificate file %s holds a private key and the key file %s a certificate: they are swapped", certFile, keyFile)
	case !hasCert(ct):
		return tls.Certificate{}, fmt.Errorf("the certificate file %s holds no PEM certificate (a line -----BEGIN CERTIFICATE-----): "+
			"use the device certificate AWS IoT gave (xxxx-certificate.pem.crt)", certFile)
	case !hasKey(kt) && bytes.Contains(keyPEM, []byte("ENCRYPTED")):
		return tls.Certificate{}, fmt.Errorf("the private key %s is encrypted with a passphrase: kvsgo needs it unencrypted (openssl pkey -in %s -out plain.key)", keyFile, keyFile)
	case !hasKey(kt):
		return tls.Certificate{}, fmt.Errorf("the private key file %s holds no PEM private key (a line -----BEGIN … PRIVATE KEY-----): "+
			"use the key made with the certificate (xxxx-private.pem.key)", keyFile)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	switch {
	case err != nil && strings.Contains(err.Error(), "does not match"):
		return tls.Certificate{}, fmt.Errorf("the private key %s does not belong to the certificate %s: use the key made together with this certificate", keyFile, certFile)
	case err != nil && bytes.Contains(keyPEM, []byte("ENCRYPTED")):
		return tls.Certificate{}, fmt.Errorf("the private key %s is encrypted with a passphrase: kvsgo needs it unencrypted (openssl pkey -in %s -out plain.key)", keyFile, keyFile)
	case err != nil:
		return tls.Certificate{}, fmt.Errorf("the certificate %s and key %s: %w", certFile, keyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("the certificate %s: %w", certFile, err)
		}
	}
	return pair, nil
}

// loadRoots reads the CA file; nil means the system's roots.
func loadRoots(caFile string) (*x509.CertPool, error) {
	if caFile == "" {
		return nil, nil
	}
	b, err := readFile("CA", caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("the CA file %s holds no PEM certificate: use Amazon Root CA 1 (%s)", caFile, amazonRootCA)
	}
	return pool, nil
}

// CertificateID is what AWS IoT calls a certificate: the SHA-256 of its DER
// bytes, in hex (`aws iot describe-certificate --certificate-id ID`).
func CertificateID(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
