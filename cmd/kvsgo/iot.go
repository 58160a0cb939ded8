package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/kvs/iot"
)

// iotOptions are the AWS IoT flags: temporary credentials from the
// device's certificate instead of access keys.
type iotOptions struct {
	cfg     iot.Config
	kvssink string // kvssink's iot-certificate property
}

func addIoTFlags(fs *flag.FlagSet, o *iotOptions) {
	fs.StringVar(&o.cfg.Endpoint, "iot-endpoint", "", "AWS IoT credentials endpoint (aws iot describe-endpoint --endpoint-type iot:CredentialProvider): "+
		"with --iot-cert, --iot-key and --iot-role-alias, AWS credentials come from the device certificate")
	fs.StringVar(&o.cfg.CertFile, "iot-cert", "", "AWS IoT: the device certificate (PEM)")
	fs.StringVar(&o.cfg.KeyFile, "iot-key", "", "AWS IoT: the certificate's private key (PEM)")
	fs.StringVar(&o.cfg.CAFile, "iot-ca", "", "AWS IoT: CA for the endpoint, e.g. AmazonRootCA1.pem (default: the system's)")
	fs.StringVar(&o.cfg.RoleAlias, "iot-role-alias", "", "AWS IoT: the role alias whose IAM role may stream")
	fs.StringVar(&o.cfg.ThingName, "iot-thing-name", "", "AWS IoT: the thing the certificate is attached to; the default --stream")
	fs.StringVar(&o.kvssink, "iot-certificate", "", `kvssink's iot-certificate: "iot-certificate,endpoint=…,cert-path=…,key-path=…,ca-path=…,role-aliases=…[,iot-thing-name=…]"`)
}

func (o *iotOptions) enabled() bool {
	c := o.cfg
	return c.Endpoint != "" || c.CertFile != "" || c.KeyFile != "" || c.CAFile != "" || c.RoleAlias != "" || c.ThingName != ""
}

// resolve checks the flags once parsed. The stream is named after the
// thing unless --stream says otherwise, as in AWS's samples; kvssink's
// iot-certificate without iot-thing-name sends the stream name as the
// thing name, as kvssink does.
func (o *iotOptions) resolve(f *putFlags) error {
	if o.kvssink != "" {
		if o.enabled() {
			return fmt.Errorf("%w: give --iot-certificate or the --iot-* flags, not both", errUsage)
		}
		c, err := iot.ParseKVSSinkCertificate(o.kvssink)
		if err != nil {
			return fmt.Errorf("%w: --iot-certificate: %v", errUsage, err)
		}
		if c.ThingName == "" {
			c.ThingName = f.stream
		}
		o.cfg = c
	}
	if !o.enabled() {
		return nil
	}
	var missing []string
	for _, m := range []struct{ flag, v string }{{"--iot-endpoint", o.cfg.Endpoint}, {"--iot-cert", o.cfg.CertFile},
		{"--iot-key", o.cfg.KeyFile}, {"--iot-role-alias", o.cfg.RoleAlias}} {
		if m.v == "" {
			missing = append(missing, m.flag)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: AWS IoT credentials need --iot-endpoint, --iot-cert, --iot-key and --iot-role-alias; missing %s", errUsage, strings.Join(missing, ", "))
	}
	if f.accessKey != "" || f.secretKey != "" {
		return fmt.Errorf("%w: give --access-key/--secret-key or the AWS IoT flags, not both", errUsage)
	}
	if f.stream == "" {
		f.stream = o.cfg.ThingName
	}
	return nil
}

// credentials makes the provider; it does not touch the network (check
// does), so that nothing holds up recording.
func (o *iotOptions) credentials(context.Context) (aws.CredentialsProvider, error) {
	creds, err := iot.NewCredentialsCache(o.cfg)
	if err != nil {
		return nil, fmt.Errorf("AWS IoT credentials: %w", err)
	}
	return creds, nil
}

// check asks for credentials once, beside the source, so that a wrong
// endpoint, certificate, thing name or role alias is reported at once. A
// failure that may pass (the network not up yet) is only reported: the
// producer keeps trying.
func (o *iotOptions) check(ctx context.Context, creds aws.CredentialsProvider) error {
	if _, err := creds.Retrieve(ctx); err != nil {
		var ie *iot.Error
		if !errors.As(err, &ie) {
			if ctx.Err() != nil {
				return nil // the run ended first
			}
			return err
		}
		if !ie.Temporary {
			return ie // without the cache's "failed to refresh cached credentials"
		}
		if o.cfg.Logger != nil {
			o.cfg.Logger.Warn("no AWS IoT credentials yet; trying again as the stream starts", "err", ie)
		}
	}
	return nil
}

// explain adds, to credentials the service refused, where they came from:
// the IAM role behind the role alias lacks a permission.
func (o *iotOptions) explain(err error) error {
	if err == nil || !o.enabled() || !errors.Is(err, kvs.ErrAuth) {
		return err
	}
	return fmt.Errorf("%w\nThe credentials come from AWS IoT role alias %q: its IAM role needs kinesisvideo:DescribeStream, "+
		"kinesisvideo:CreateStream (unless --no-create), kinesisvideo:GetDataEndpoint and kinesisvideo:PutMedia on the stream", err, o.cfg.RoleAlias)
}
