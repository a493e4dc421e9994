// Command testenv-apiserver runs an embedded etcd and a real kube-apiserver on 127.0.0.1
// for the kubectl-capc test suite. It generates its own PKI, writes DIR/kubeconfig for an
// admin identity (system:masters client certificate) and serves until SIGTERM/SIGINT.
// With -keep-state it restarts on an earlier run's etcd data and PKI (same port via -port), as a
// restarted apiserver would: clients keep their credentials and resourceVersions stay valid.
//
// Files written under -dir:
//
//	pki/          CA, serving certificate, admin client certificate, service-account keys
//	etcd/         etcd data (wiped on start, unless -keep-state)
//	kubeconfig    admin kubeconfig (written once the certificates exist; poll /readyz for readiness)
//	endpoint      the https URL of the apiserver
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	dir := flag.String("dir", "", "state directory (required)")
	port := flag.Int("port", 0, "secure port for the apiserver (0 picks a free one)")
	auditPolicy := flag.String("audit-policy-file", "", "optional audit policy; the log goes to DIR/audit.log")
	keepState := flag.Bool("keep-state", false, "reuse DIR's etcd data and PKI from an earlier run")
	runtimeConfig := flag.String("runtime-config", "", "further --runtime-config entries (comma-separated)")
	flag.Parse()
	if *dir == "" {
		fail("-dir is required")
	}
	if err := run(*dir, *port, *auditPolicy, *keepState, *runtimeConfig); err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "testenv-apiserver:", msg)
	os.Exit(1)
}

func run(dir string, port int, auditPolicy string, keepState bool, runtimeConfig string) error {
	pki := filepath.Join(dir, "pki")
	etcdDir := filepath.Join(dir, "etcd")
	if !keepState {
		if err := os.RemoveAll(etcdDir); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(pki, 0o700); err != nil {
		return err
	}
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		port = p
	}
	if _, err := os.Stat(filepath.Join(pki, "ca.crt")); err != nil || !keepState {
		if err := writePKI(pki); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
	}
	endpoint := fmt.Sprintf("https://127.0.0.1:%d", port)
	if err := writeKubeconfig(dir, pki, endpoint); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "endpoint"), []byte(endpoint+"\n"), 0o600); err != nil {
		return err
	}

	etcdURL, stopEtcd, err := startEtcd(etcdDir)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer stopEtcd()

	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file=" + filepath.Join(pki, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(pki, "serving.key"),
		"--client-ca-file=" + filepath.Join(pki, "ca.crt"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(pki, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--enable-priority-and-fairness=false",
		"--disable-admission-plugins=ServiceAccount",
		"--endpoint-reconciler-type=none",
		// MutatingAdmissionPolicies stand in for CAPI's defaulting webhooks (policies.yaml).
		"--feature-gates=MutatingAdmissionPolicy=true",
		"--runtime-config=admissionregistration.k8s.io/v1beta1=true",
		"--v=0",
	}
	if runtimeConfig != "" {
		args = append(args, "--runtime-config=admissionregistration.k8s.io/v1beta1=true,"+runtimeConfig)
	}
	if auditPolicy != "" {
		args = append(args,
			"--audit-policy-file="+auditPolicy,
			"--audit-log-path="+filepath.Join(dir, "audit.log"),
			"--audit-log-mode=blocking",
			"--audit-log-format=json",
		)
	}

	cmd := app.NewAPIServerCommand()
	cmd.SetArgs(args)
	errc := make(chan error, 1)
	go func() { errc <- cmd.Execute() }()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sigs:
		return nil
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("kube-apiserver: %w", err)
		}
		return nil
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd(dataDir string) (string, func(), error) {
	clientPort, err := freePort()
	if err != nil {
		return "", nil, err
	}
	peerPort, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cfg := embed.NewConfig()
	cfg.Dir = dataDir
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = true
	client, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	peer, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg.ListenClientUrls = []url.URL{*client}
	cfg.AdvertiseClientUrls = []url.URL{*client}
	cfg.ListenPeerUrls = []url.URL{*peer}
	cfg.AdvertisePeerUrls = []url.URL{*peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return "", nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return "", nil, fmt.Errorf("etcd did not become ready in 60s")
	}
	return client.String(), e.Close, nil
}

type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func writePKI(pki string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubectl-capc-testenv-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	ca := keyPair{caCert, caKey}
	if err := writeCertKey(pki, "ca", caDER, caKey); err != nil {
		return err
	}
	serving := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if err := issue(pki, "serving", serving, ca); err != nil {
		return err
	}
	admin := &x509.Certificate{
		SerialNumber: big.NewInt(3),
		Subject:      pkix.Name{CommonName: "testenv-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := issue(pki, "admin", admin, ca); err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(pki, "sa.key"), "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey)); err != nil {
		return err
	}
	return writePEM(filepath.Join(pki, "sa.pub"), "PUBLIC KEY", pub)
}

func issue(pki, name string, tmpl *x509.Certificate, ca keyPair) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return err
	}
	return writeCertKey(pki, name, der, key)
}

func writeCertKey(pki, name string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(pki, name+".crt"), "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(filepath.Join(pki, name+".key"), "EC PRIVATE KEY", keyDER)
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

func writeKubeconfig(dir, pki, endpoint string) error {
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(pki, name))
		return base64.StdEncoding.EncodeToString(b), err
	}
	ca, err := read("ca.crt")
	if err != nil {
		return err
	}
	cert, err := read("admin.crt")
	if err != nil {
		return err
	}
	key, err := read("admin.key")
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: testenv-admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: testenv
  context:
    cluster: testenv
    user: testenv-admin
    namespace: default
current-context: testenv
`, endpoint, ca, cert, key)
	tmp := filepath.Join(dir, "kubeconfig.tmp")
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "kubeconfig"))
}
