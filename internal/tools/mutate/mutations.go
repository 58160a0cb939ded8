package main

import "time"

// Each group of tests is what the engineers who closed issue 15's holes
// reported catching the mutation; -list shows them, a run checks them.
var (
	e2eTimeout  = 10 * time.Minute
	unitTimeout = 5 * time.Minute
)

func unit(pkg string, names ...string) tests {
	return tests{pkg: pkg, names: names, timeout: unitTimeout}
}

func e2e(names ...string) tests { return tests{pkg: "./e2e", names: names, timeout: e2eTimeout} }

// dropEveryTenth drops every tenth frame at a source's call to
// sink.Frame: before is the text of that call, decl a top-level
// declaration the counter goes in front of.
func dropEveryTenth(name, file, decl, before, skip string) mutation {
	return mutation{
		name:  name,
		claim: "the " + name[len("drop-"):] + " source drops every 10th frame",
		edits: []edit{
			{file, decl, "var mutateDropped int\n\n" + decl},
			{file, before, "mutateDropped++\n\t\tif mutateDropped%10 == 0 {\n\t\t\t" + skip + "\n\t\t}\n\t\t" + before},
		},
		tests: []tests{unit("./internal/source", "TestEveryFixture"), e2e("TestEveryFrameAtItsTime")},
	}
}

var mutations = []mutation{
	{
		name:  "auth-streaming",
		claim: "no SigV4 check on PutMedia, GetMedia, GetMediaForFragmentList, GetClip",
		edits: []edit{{"internal/server/server.go",
			"if ae := s.authenticate(r, hash); ae != nil {",
			"if ae := s.authenticate(r, hash); false && ae != nil {"}},
		tests: []tests{e2e("TestSignatureVerifiedOnEveryOperation")},
	},
	{
		name:  "persisted-before-store",
		claim: "serve acknowledges PERSISTED before the fragment is committed",
		edits: []edit{
			{"internal/server/putmedia.go",
				"\tstored, dup, err := fw.Commit(store.FragmentMeta{",
				"\tif in.stream.RetentionHours > 0 {\n\t\tin.ack(kvs.Ack{EventType: kvs.AckPersisted, FragmentTimecode: f.timecode, HasTimecode: true})\n\t}\n\tstored, dup, err := fw.Commit(store.FragmentMeta{"},
			{"internal/server/putmedia.go",
				"\tif in.stream.RetentionHours > 0 {\n\t\tin.ack(kvs.Ack{EventType: kvs.AckPersisted, FragmentTimecode: f.timecode, HasTimecode: true, FragmentNumber: stored.Number()})\n\t}\n",
				""},
		},
		tests: []tests{e2e("TestPersistedOnlyOnceStored")},
	},
	{
		name:  "store-no-fsync",
		claim: "the store never fsyncs (NoSync forced)",
		edits: []edit{{"internal/store/store.go",
			"\tif opts.FS == nil {\n",
			"\topts.NoSync = true\n\tif opts.FS == nil {\n"}},
		tests: []tests{unit("./internal/store", "TestCommittedFragmentsSurviveAPowerCut")},
	},
	{
		name:  "store-no-torn-repair",
		claim: "the store does not check its segments on open",
		edits: []edit{{"internal/store/store.go",
			"if err := s.recoverSegments(); err != nil {",
			"if err := error(nil); err != nil {"}},
		tests: []tests{unit("./internal/store", "TestTornSegmentOnOpen")},
	},
	{
		name:  "diskbuffer-no-fsync",
		claim: "put's disk buffer does not fsync a fragment's file",
		edits: []edit{{"kvs/diskbuffer.go",
			"\terr := cur.Sync()\n",
			"\terr := error(nil)\n"}},
		tests: []tests{unit("./kvs", "TestDiskBufferSurvivesPowerCuts")},
	},
	{
		name:  "release-at-received",
		claim: "put forgets a fragment (and deletes its file) at RECEIVED, not PERSISTED",
		edits: []edit{{"kvs/connection.go",
			"\tcase AckReceived:\n\t\treturn p.retention == 0\n",
			"\tcase AckReceived:\n\t\treturn true\n"}},
		tests: []tests{unit("./kvs", "TestFilesStayUntilPersisted")},
	},
	{
		name:  "any-ack-clears-deadlines",
		claim: "one fragment's ack clears every fragment's ack deadline",
		edits: []edit{{"kvs/connection.go",
			"\tfinal := a.EventType == AckPersisted || a.EventType == AckReceived && p.retention == 0\n",
			"\tfinal := a.EventType == AckPersisted || a.EventType == AckReceived && p.retention == 0\n\tif final {\n\t\tp.awaiting = p.awaiting[:0]\n\t\treturn\n\t}\n"}},
		tests: []tests{unit("./kvs", "TestStaleWhenOneFragmentLosesItsAcks")},
	},
	{
		name:  "close-without-last-acks",
		claim: "put closes a connection (rotation) without waiting for its last acks",
		edits: []edit{{"kvs/connection.go",
			"\t_ = sess.CloseBody()\n\tt := time.NewTimer(5 * time.Second)\n\tdefer t.Stop()\n\tselect {\n\tcase <-sess.Done():\n\tcase <-t.C:\n\t}\n",
			"\t_ = sess.CloseBody()\n"}},
		tests: []tests{unit("./kvs", "TestRotatesConnectionsAndCredentials")},
	},
	{
		name:  "no-server-dedupe",
		claim: "serve stores a fragment sent again a second time",
		edits: []edit{{"internal/store/writer.go",
			"existing, dup, err := s.identical(st.id, m.ProducerMS, w.n, w.body)",
			"existing, dup, err := Fragment{}, false, error(nil)"}},
		tests: []tests{unit("./internal/server", "TestResentFragmentsStoredOnce")},
	},
	dropEveryTenth("drop-annexb", "internal/source/annexb.go",
		"func (a *AnnexB) Run(ctx context.Context, sink Sink) error {",
		"if err := sink.Frame(media.Frame{Track: 1, PTS: pts, DTS: dts, Key: a.Codec.IsKey(au), Data: buf}); err != nil {",
		"n++\n\t\t\tcontinue"),
	dropEveryTenth("drop-matroska", "internal/source/matroska.go",
		"func (m *Matroska) Run(ctx context.Context, sink Sink) error {",
		"if err := sink.Frame(media.Frame{Track: k.number, PTS: at, DTS: at, Key: ev.Key, Data: data}); err != nil {",
		"continue"),
	dropEveryTenth("drop-mpegts", "internal/source/mpegts.go",
		"func (m *MPEGTS) Run(ctx context.Context, sink Sink) error {",
		"return sink.Frame(media.Frame{Track: 1, PTS: ticks90k(pts), DTS: ticks90k(dts), Key: key, Data: buf})",
		"return nil"),
	dropEveryTenth("drop-mp4", "internal/source/mp4.go",
		"func (m *MP4) Run(ctx context.Context, sink Sink) error {",
		"if err := sink.Frame(media.Frame{Track: o.track, PTS: o.pts, DTS: o.dts, Key: o.key, Data: data}); err != nil {",
		"continue"),
	{
		name:  "kvssink-staleness-ms",
		claim: "kvssink's --connection-staleness read as milliseconds",
		edits: []edit{{"cmd/kvsgo/put.go",
			"\tfor _, secs := range []int{maxLatency, staleness} {\n\t\tif secs > 0 {\n\t\t\tf.ackTimeout = time.Duration(secs) * time.Second\n\t\t}\n\t}\n",
			"\tif maxLatency > 0 {\n\t\tf.ackTimeout = time.Duration(maxLatency) * time.Second\n\t}\n\tif staleness > 0 {\n\t\tf.ackTimeout = time.Duration(staleness) * time.Millisecond\n\t}\n"}},
		tests: []tests{unit("./cmd/kvsgo", "TestKVSSinkAliasesSettings")},
	},
	{
		name:  "kvssink-buffer-duration-ignored",
		claim: "kvssink's --buffer-duration ignored",
		edits: []edit{{"cmd/kvsgo/put.go",
			"\tif bufferSecs > 0 {\n\t\tf.bufferDuration = time.Duration(bufferSecs) * time.Second\n\t}\n",
			"\t_ = bufferSecs\n"}},
		tests: []tests{unit("./cmd/kvsgo", "TestKVSSinkAliasesSettings")},
	},
	{
		name:  "proxy-cut-noop",
		claim: "the fault test's proxy cuts nothing (the test must notice no fault happened)",
		edits: []edit{{"e2e/faultproxy_test.go",
			"func (p *tcpProxy) drop()   { p.set(func() { p.refuse = true }); p.closeAll(false) }",
			"func (p *tcpProxy) drop()   {}"}},
		tests: []tests{e2e("TestFaultNetwork/drop")},
	},
	{
		name:  "getmedia-no-wait",
		claim: "GetMedia ends at the live edge instead of waiting for data",
		edits: []edit{{"internal/server/getmedia.go",
			"\t\t// At the live edge.\n\t\twait := time.Duration(-1) // for as long as it takes\n",
			"\t\t// At the live edge.\n\t\tif g.sent >= 0 {\n\t\t\treturn\n\t\t}\n\t\twait := time.Duration(-1)\n"}},
		tests: []tests{e2e("TestGetMediaWaitsAtTheLiveEdge")},
	},
}
