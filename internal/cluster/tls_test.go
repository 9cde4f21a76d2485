package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/stratus-rtmfp/stratus/internal/testutil"
)

// testCA makes a CA and a certificate it signs for 127.0.0.1, as mutual
// TLS for routes wants (server and client use).
func testCA(t *testing.T) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "stratus test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "node"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Routes with mutual TLS form a cluster; a node without TLS (but with
// the secret) cannot route to it.
func TestRouteTLS(t *testing.T) {
	pool, cert := testCA(t)
	tc := startCluster(t, 3, func(i int, c *Config) {
		if i < 2 {
			c.RouteTLS = &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, ClientCAs: pool,
				ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
		}
	})
	testutil.WaitUntil(t, 30*time.Second, "nodes 1 and 2 routed over TLS", func() bool {
		return len(tc.nodes[0].Status().Nodes) == 2 && len(tc.nodes[1].Status().Nodes) == 2 && tc.nodes[0].Status().Connected
	})
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if len(tc.nodes[2].Status().Nodes) != 1 || len(tc.nodes[0].Status().Nodes) != 2 {
			t.Fatal("a node without TLS joined the TLS routes")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
