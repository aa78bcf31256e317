#![doc = include_str!("../README.md")]

pub mod result_type;
