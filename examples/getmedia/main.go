// Command getmedia shows how to read a Kinesis video stream with kvsgo's Go
// API: it prints one line per frame (time, track, size, key frame) until
// Ctrl-C, or until it has caught up with -until-caught-up. A detector would
// decode the frames instead of printing them.
//
//	go run ./examples/getmedia -stream demo -endpoint http://127.0.0.1:4567 -start earliest
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/media"
)

func main() {
	stream := flag.String("stream", "demo", "stream name")
	endpoint := flag.String("endpoint", "", "control-plane URL (empty: AWS)")
	start := flag.String("start", "now", "now, earliest, a fragment number or a time")
	untilCaughtUp := flag.Bool("until-caught-up", false, "stop at the live edge")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *stream, *endpoint, *start, *untilCaughtUp); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, stream, endpoint, start string, untilCaughtUp bool) error {
	sel, err := kvs.ParseStart(start, time.Now())
	if err != nil {
		return err
	}
	// The standard AWS credential chain and region.
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	r, err := kvs.NewReader(ctx, kvs.ReaderConfig{
		Stream:        stream,
		Start:         sel,
		UntilCaughtUp: untilCaughtUp,
		Endpoints:     kvs.NewSDKControlPlane(awsCfg, endpoint, nil),
		Credentials:   awsCfg.Credentials,
		Region:        awsCfg.Region,
	})
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		f, err := r.Next()
		if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
			return nil
		}
		if err != nil {
			return err
		}
		kind := "audio"
		if t := f.Fragment.Track(f.Track); t != nil && t.Kind == media.KindVideo {
			kind = "video"
		}
		key := ""
		if f.Key {
			key = " key"
		}
		fmt.Printf("%s fragment %s track %d %s %6d bytes%s\n",
			f.Time().UTC().Format("15:04:05.000"), f.Fragment.Number, f.Track, kind, len(f.Data), key)
	}
}
