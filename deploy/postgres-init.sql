-- One database per service, created on PostgreSQL's first start.
CREATE DATABASE gateway;
CREATE DATABASE plans;
CREATE DATABASE budgets;
CREATE DATABASE decisions;
CREATE DATABASE groups;
