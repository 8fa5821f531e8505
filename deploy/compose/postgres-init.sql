-- One database per ATLAS service, owned by the compose user (runs once, on an empty volume).
CREATE DATABASE data OWNER atlas;
CREATE DATABASE serving OWNER atlas;
CREATE DATABASE labeling OWNER atlas;
CREATE DATABASE trainer OWNER atlas;
CREATE DATABASE graph OWNER atlas;
