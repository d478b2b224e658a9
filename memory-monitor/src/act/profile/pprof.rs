//! The pprof format (`profile.proto` of github.com/google/pprof), written with prost.
//!
//! Only the messages and fields a memory profile needs are declared; the field numbers are
//! the format's, so `go tool pprof` and every other pprof reader read the result. Profiles
//! are gzip-compressed, as pprof expects.

use std::collections::HashMap;
use std::io::Write;
use std::time::SystemTime;

use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;

/// `Profile`: the whole profile; strings are indexes into `string_table` (index 0 is "").
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub(crate) sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub(crate) location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub(crate) function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub(crate) string_table: Vec<String>,
    #[prost(int64, tag = "9")]
    pub(crate) time_nanos: i64,
    #[prost(int64, repeated, tag = "13")]
    pub(crate) comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub(crate) default_sample_type: i64,
}

/// `ValueType`: what a sample value counts, in which unit.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub(crate) unit: i64,
}

/// `Sample`: values (one per sample type) at a stack of locations, leaf first.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Sample {
    #[prost(uint64, repeated, tag = "1")]
    pub(crate) location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub(crate) value: Vec<i64>,
}

/// `Mapping`: a range of the process's address space.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Mapping {
    #[prost(uint64, tag = "1")]
    pub(crate) id: u64,
    #[prost(uint64, tag = "2")]
    pub(crate) memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub(crate) memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub(crate) file_offset: u64,
    #[prost(int64, tag = "5")]
    pub(crate) filename: i64,
    #[prost(bool, tag = "7")]
    pub(crate) has_functions: bool,
}

/// `Location`: an address, and the function(s) it is in.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Location {
    #[prost(uint64, tag = "1")]
    pub(crate) id: u64,
    #[prost(uint64, tag = "2")]
    pub(crate) mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub(crate) address: u64,
    #[prost(message, repeated, tag = "4")]
    pub(crate) line: Vec<Line>,
}

/// `Line`: a function at a location.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Line {
    #[prost(uint64, tag = "1")]
    pub(crate) function_id: u64,
    #[prost(int64, tag = "2")]
    pub(crate) line: i64,
}

/// `Function`: a name.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Function {
    #[prost(uint64, tag = "1")]
    pub(crate) id: u64,
    #[prost(int64, tag = "2")]
    pub(crate) name: i64,
    #[prost(int64, tag = "3")]
    pub(crate) system_name: i64,
    #[prost(int64, tag = "4")]
    pub(crate) filename: i64,
}

/// Builds a [`Profile`]: interns strings and functions, numbers everything from 1.
#[derive(Debug)]
pub(crate) struct Builder {
    profile: Profile,
    strings: HashMap<String, i64>,
    functions: HashMap<i64, u64>,
}

impl Builder {
    /// A profile whose samples carry one value per `(type, unit)`, e.g. `("rss", "bytes")`.
    pub(crate) fn new(sample_types: &[(&str, &str)]) -> Builder {
        let mut builder = Builder {
            profile: Profile {
                string_table: vec![String::new()],
                ..Profile::default()
            },
            strings: HashMap::from([(String::new(), 0)]),
            functions: HashMap::new(),
        };
        for (kind, unit) in sample_types {
            let value_type = ValueType {
                r#type: builder.string(kind),
                unit: builder.string(unit),
            };
            builder.profile.sample_type.push(value_type);
        }
        builder
    }

    /// The index of `text` in the string table.
    pub(crate) fn string(&mut self, text: &str) -> i64 {
        if let Some(&index) = self.strings.get(text) {
            return index;
        }
        let index = self.profile.string_table.len() as i64;
        self.profile.string_table.push(text.to_owned());
        self.strings.insert(text.to_owned(), index);
        index
    }

    /// The id of the function named `name` (one per distinct name).
    pub(crate) fn function(&mut self, name: &str) -> u64 {
        let name = self.string(name);
        let next = self.profile.function.len() as u64 + 1;
        let id = *self.functions.entry(name).or_insert(next);
        if id == next {
            self.profile.function.push(Function {
                id,
                name,
                system_name: name,
                filename: 0,
            });
        }
        id
    }

    /// Adds a mapping of `[start, limit)` at `file_offset` of `file`; returns its id.
    pub(crate) fn mapping(&mut self, start: u64, limit: u64, file_offset: u64, file: &str) -> u64 {
        let filename = self.string(file);
        let id = self.profile.mapping.len() as u64 + 1;
        self.profile.mapping.push(Mapping {
            id,
            memory_start: start,
            memory_limit: limit,
            file_offset,
            filename,
            has_functions: true,
        });
        id
    }

    /// Adds a location at `address` (in `mapping`, 0 for none) within `functions`, innermost
    /// first; returns its id.
    pub(crate) fn location(&mut self, mapping: u64, address: u64, functions: &[u64]) -> u64 {
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(Location {
            id,
            mapping_id: mapping,
            address,
            line: functions
                .iter()
                .map(|&function_id| Line {
                    function_id,
                    line: 0,
                })
                .collect(),
        });
        id
    }

    /// Adds a sample: `values` (one per sample type) at `locations`, leaf first.
    pub(crate) fn sample(&mut self, locations: Vec<u64>, values: Vec<i64>) {
        self.profile.sample.push(Sample {
            location_id: locations,
            value: values,
        });
    }

    /// Makes the sample type named `kind` the one readers show by default.
    pub(crate) fn default_sample_type(&mut self, kind: &str) {
        self.profile.default_sample_type = self.string(kind);
    }

    /// Adds a comment line, shown by `go tool pprof -comments`.
    pub(crate) fn comment(&mut self, text: &str) {
        let index = self.string(text);
        self.profile.comment.push(index);
    }

    /// The profile, taken at `time`, encoded and gzip-compressed.
    pub(crate) fn finish(mut self, time: SystemTime) -> Vec<u8> {
        self.profile.time_nanos = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
        gzip.write_all(&self.profile.encode_to_vec())
            .expect("writing to memory cannot fail");
        gzip.finish().expect("writing to memory cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;

    #[test]
    fn a_built_profile_decodes_to_what_was_put_in() {
        let mut builder = Builder::new(&[("rss", "bytes"), ("swap", "bytes")]);
        let mapping = builder.mapping(0x1000, 0x3000, 0, "/usr/bin/app");
        let function = builder.function("/usr/bin/app");
        assert_eq!(
            builder.function("/usr/bin/app"),
            function,
            "functions are interned"
        );
        let location = builder.location(mapping, 0x1000, &[function]);
        builder.sample(vec![location], vec![8192, 0]);
        builder.comment("a comment");
        let bytes = builder.finish(SystemTime::UNIX_EPOCH);

        let mut raw = Vec::new();
        GzDecoder::new(&bytes[..]).read_to_end(&mut raw).unwrap();
        let profile = Profile::decode(&raw[..]).unwrap();
        let text = |index: i64| profile.string_table[index as usize].as_str();
        assert_eq!(text(0), "");
        let types: Vec<_> = profile.sample_type.iter().map(|t| text(t.r#type)).collect();
        assert_eq!(types, ["rss", "swap"]);
        assert_eq!(profile.sample[0].value, [8192, 0]);
        let location = &profile.location[profile.sample[0].location_id[0] as usize - 1];
        let function = &profile.function[location.line[0].function_id as usize - 1];
        assert_eq!(text(function.name), "/usr/bin/app");
        assert_eq!(text(profile.mapping[0].filename), "/usr/bin/app");
        assert_eq!(text(profile.comment[0]), "a comment");
    }
}
