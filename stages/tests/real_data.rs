//! The reader, inventory, scaling and windows checked against the real SolARED files and the
//! facts docs/src/semantics.md records about them.

use std::path::PathBuf;

use magpipe_stages::ingest::inventory;
use magpipe_stages::scale::{self, ScaleMode, ScaleParams};
use magpipe_stages::solared::{self, npy, pickle, time::format_micros, zip};
use magpipe_stages::table::{FEATURES, FLUX, POWER, SeriesTable};
use magpipe_stages::window::{self, WindowParams};

fn data() -> PathBuf {
    solared::checkout_data_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}

#[test]
fn all_57_ars_load_with_decoded_timestamps() {
    let dir = data();
    let ars = solared::list_ars(&dir).unwrap();
    assert_eq!(ars.len(), 57);
    let mut lens = std::collections::BTreeMap::new();
    for &ar in &ars {
        let s = solared::load_ar(&dir, ar).unwrap();
        lens.insert(ar, s.len());
        // Mid-times of the 8-h Doppler series: every stamp is at HH:59:37.5.
        assert!(
            s.times
                .iter()
                .all(|&t| format_micros(t)[13..] == *":59:37.500000"),
            "AR{ar}"
        );
    }
    assert_eq!(lens[&11190], 239);
    assert_eq!(lens[&11726], 232);
    assert_eq!(lens[&12571], 209);
    assert_eq!(lens.values().filter(|&&t| t == 240).count(), 54);
    let s = solared::load_ar(&dir, 11698).unwrap();
    assert_eq!(format_micros(s.times[0]), "2013-03-07 18:59:37.500000");
    assert_eq!(
        format_micros(*s.times.last().unwrap()),
        "2013-03-17 17:59:37.500000"
    );
    let s = solared::load_ar(&dir, 13179).unwrap();
    assert_eq!(
        format_micros(*s.times.last().unwrap()),
        "2023-01-03 02:59:37.500000"
    );
}

#[test]
fn the_pickle_encoder_reproduces_the_real_files_byte_for_byte() {
    // So fixtures written by our writer exercise exactly the bytes numpy wrote.
    let dir = data();
    for ar in [11130, 11726, 12571] {
        for (which, member) in [(0, "arr_1.npy"), (1, "arr_1.npy"), (2, "arr_4.npy")] {
            let path = &solared::ar_files(&dir, ar)[which];
            let bytes = std::fs::read(path).unwrap();
            let e = zip::entries(&bytes)
                .unwrap()
                .into_iter()
                .find(|e| e.name == member)
                .unwrap();
            let m = zip::read_entry(&bytes, &e).unwrap();
            let h = npy::parse_header(&m).unwrap();
            assert_eq!(h.data_offset, 128);
            let times = pickle::decode_datetime_array(&m[h.data_offset..]).unwrap();
            assert_eq!(
                pickle::encode_datetime_array(&times),
                m[h.data_offset..],
                "{}",
                path.display()
            );
            let mut again = npy::header_bytes("|O", &[times.len()]);
            again.extend(pickle::encode_datetime_array(&times));
            assert_eq!(again, *m);
        }
    }
}

#[test]
fn a_fixture_written_by_write_ar_reads_back_identically() {
    let dir = data();
    let s = solared::load_ar(&dir, 13213).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    solared::write_ar(tmp.path(), &s).unwrap();
    let back = solared::load_ar(tmp.path(), 13213).unwrap();
    // NaN != NaN, so compare bits.
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(back.times, s.times);
    assert_eq!(bits(&back.flux), bits(&s.flux));
    assert_eq!(bits(&back.power[3]), bits(&s.power[3]));
    // And the files are laid out like numpy's: same size as the originals.
    for (a, b) in solared::ar_files(&dir, 13213)
        .iter()
        .zip(solared::ar_files(tmp.path(), 13213))
    {
        assert_eq!(
            std::fs::metadata(a).unwrap().len(),
            std::fs::metadata(b).unwrap().len()
        );
    }
}

#[test]
fn inventory_matches_semantics_table() {
    let dir = data();
    let inv = |ar| inventory(&solared::load_ar(&dir, ar).unwrap());
    let i = inv(13213);
    assert_eq!((i.nan[0], i.nan[1], i.nan[POWER[0]]), (99, 99, 216));
    assert_eq!(
        (i.central_nan[0], i.central_nan[1], i.central_nan[POWER[3]]),
        (11, 11, 24)
    );
    let i = inv(12144);
    assert_eq!((i.nan[0], i.nan[1], i.nan[POWER[2]]), (36, 36, 54));
    assert_eq!(inv(11726).gaps_text(), "208→209: 9 h");
    assert_eq!(inv(12571).gaps_text(), "22→23: 32 h");
    assert_eq!(inv(11190).gaps_text(), "117→118: 2 h");
    assert_eq!(inv(11190).repeated_text(), "116–117, 118–123");
    assert_eq!(inv(11726).repeated_text(), "51–54, 209–214");
    assert_eq!(inv(13179).repeated_text(), "230–235");
    assert_eq!(inv(11130).repeated_text(), "");
    assert!(inv(11130).gaps.is_empty());
}

const TRAIN: [u32; 41] = [
    11130, 11149, 11158, 11162, 11199, 11327, 11344, 11387, 11393, 11416, 11422, 11455, 11619,
    11640, 11660, 11678, 11682, 11765, 11768, 11776, 11916, 11928, 12036, 12051, 12085, 12089,
    12144, 12175, 12203, 12257, 12331, 12494, 12659, 12778, 12864, 12877, 12900, 12929, 13004,
    13085, 13098,
];

fn series(ars: &[u32]) -> SeriesTable {
    let dir = data();
    let mut t = SeriesTable::default();
    for &ar in ars {
        t.blocks.push(solared::load_ar(&dir, ar).unwrap().into());
    }
    t
}

#[test]
fn scaler_is_fitted_on_the_training_central_row_after_nan_fill() {
    let t = series(&TRAIN);
    let dir = data();
    // Independent extremes, straight from the files.
    let mut lo = [f64::INFINITY; 6];
    let mut hi = [f64::NEG_INFINITY; 6];
    for &ar in &TRAIN {
        let s = solared::load_ar(&dir, ar).unwrap();
        let n = s.len();
        let chans = s.channels();
        for (c, v) in chans.iter().enumerate() {
            for k in 36..45 {
                for x in &v[k * n..(k + 1) * n] {
                    let x = if x.is_nan() { 0.0 } else { *x };
                    lo[c] = lo[c].min(x);
                    hi[c] = hi[c].max(x);
                }
            }
        }
    }
    let shared = scale::fit(&t, &TRAIN, &ScaleParams::default()).unwrap();
    let per = scale::fit(
        &t,
        &TRAIN,
        &ScaleParams {
            mode: ScaleMode::PerChannel,
            ..Default::default()
        },
    )
    .unwrap();
    for c in 0..6 {
        assert_eq!(
            (per.pair(c).min, per.pair(c).max),
            (lo[c], hi[c]),
            "channel {c}"
        );
    }
    let pooled = (
        POWER.iter().map(|&c| lo[c]).fold(f64::INFINITY, f64::min),
        POWER
            .iter()
            .map(|&c| hi[c])
            .fold(f64::NEG_INFINITY, f64::max),
    );
    for c in POWER {
        assert_eq!((shared.pair(c).min, shared.pair(c).max), pooled);
    }
    // docs/src/semantics.md §6: the 3–4 mHz band sets both pooled extremes.
    assert_eq!((lo[POWER[1]], hi[POWER[1]]), pooled);
    assert_eq!(shared.pair(FLUX), per.pair(FLUX));
    assert_eq!(shared.fit_samples, 41 * 9 * 240);

    // Filled samples become −min/(max−min), not 0, and nothing is clamped.
    let scaled = scale::apply(&t, &[11162], &shared).unwrap();
    let b = &scaled.blocks[0];
    let raw = t.block(11162).unwrap();
    let p23 = t.channel(raw, POWER[0]);
    let i = (36 * raw.len()..45 * raw.len())
        .find(|&i| p23[i].is_nan())
        .expect("11162 has a central power NaN");
    let r = shared.pair(POWER[0]);
    assert_eq!(scaled.channel(b, POWER[0])[i], -r.min / (r.max - r.min));
    assert!(b.values[FLUX].iter().all(|x| x.is_finite()));
}

#[test]
fn windows_follow_both_target_alignments() {
    let t = series(&[11130, 11149]);
    let s = scale::fit(&t, &[11130, 11149], &ScaleParams::default()).unwrap();
    let st = scale::apply(&t, &[11130, 11149], &s).unwrap();
    for offset in [0, 1] {
        let p = WindowParams {
            target_offset: offset,
            ..Default::default()
        };
        let w = window::make(&st, &p);
        let per_tile = 240 - 110 - 12 + 2 - offset;
        assert_eq!(w.index.len(), 2 * 9 * per_tile);
        // Window n = 130 of AR11149 (second AR), tile 38, start i.
        let n = 9 * per_tile + 2 * per_tile + 7;
        let (ar, k, i) = w.index[n];
        assert_eq!((ar, k, i), (11149, 38, 7));
        let b = st.block(11149).unwrap();
        for (f, &c) in FEATURES.iter().enumerate() {
            let want = st.channel(b, c)[k as usize * 240 + i as usize + 5] as f32;
            assert_eq!(w.x[(n * 110 + 5) * 5 + f], want);
        }
        let flux = st.channel(b, FLUX);
        for j in 0..12 {
            let want = flux[k as usize * 240 + i as usize + 109 + offset + j] as f32;
            assert_eq!(w.y[n * 12 + j], want);
        }
    }
}
