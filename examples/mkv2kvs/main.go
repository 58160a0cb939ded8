// Command mkv2kvs shows how to embed kvsgo's producer in a Go program: it
// reads a Matroska file (H.264/H.265 video, optional AAC audio) and streams
// it to Kinesis Video Streams in real time.
//
//	go run ./examples/mkv2kvs -stream demo -endpoint http://127.0.0.1:4567 testdata/h264-aac.mkv
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/kvsgo/kvsgo/kvs"
	"github.com/kvsgo/kvsgo/media"
	"github.com/kvsgo/kvsgo/mkv"
)

func main() {
	stream := flag.String("stream", "demo", "stream name")
	endpoint := flag.String("endpoint", "", "control-plane URL (empty: AWS)")
	flag.Parse()
	if flag.NArg() != 1 {
		log.Fatal("usage: mkv2kvs [-stream NAME] [-endpoint URL] FILE.mkv")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *stream, *endpoint, flag.Arg(0)); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, stream, endpoint, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()

	// The standard AWS credential chain and region.
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return err
	}
	cfg := kvs.ProducerConfig{
		Stream:       kvs.StreamSetup{Name: stream, Create: true, RetentionHours: 24},
		ControlPlane: kvs.NewSDKControlPlane(awsCfg, endpoint, nil),
		Credentials:  awsCfg.Credentials,
		Region:       awsCfg.Region,
		Logger:       slog.Default(),
		OnEvent:      func(e kvs.Event) { slog.Info("kvs", "event", e.Type, "message", e.Message) },
	}

	var producer *kvs.Producer
	start := time.Now()
	d := mkv.NewDemuxer(f)
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch ev.Type {
		case mkv.EventHeader:
			if producer != nil {
				continue
			}
			var tracks []media.Track
			for _, t := range ev.Header.Tracks {
				mt := media.Track{Number: uint8(t.Number), CodecID: t.CodecID, CodecPrivate: t.CodecPrivate, Name: t.Name}
				if t.Type == mkv.TrackTypeVideo {
					mt.Kind, mt.Width, mt.Height = media.KindVideo, int(t.Width), int(t.Height)
				} else {
					mt.Kind, mt.SampleRate, mt.Channels = media.KindAudio, t.SamplingFrequency, int(t.Channels)
				}
				tracks = append(tracks, mt)
			}
			if producer, err = kvs.NewProducer(ctx, cfg, tracks); err != nil {
				return err
			}
		case mkv.EventBlock:
			if producer == nil {
				return errors.New("a frame before the tracks")
			}
			ts := time.Duration(ev.Timecode) * time.Millisecond
			time.Sleep(time.Until(start.Add(ts))) // real time, as a camera
			for _, data := range ev.Block.Frames {
				frame := media.Frame{Track: uint8(ev.Block.Track), PTS: ts, DTS: ts, Key: ev.Key, Data: data}
				if err := producer.Put(frame); err != nil {
					return err
				}
			}
		}
	}
	if producer == nil {
		return errors.New("no tracks in the file")
	}
	st, err := producer.Close(ctx)
	fmt.Printf("%d frames, %d fragments, %d persisted\n", st.Frames, st.Fragments, st.Persisted)
	return err
}
